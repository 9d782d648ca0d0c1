"""A fake scheduler for tests of the worker agent and the client: a real ZeroMQ ROUTER
socket in the test's event loop that sends exactly the frames each case needs (Welcome,
Assign with its lease basis and seq, hello_first, acks, NotLeader) and reads what the
worker or client sends back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import zmq
import zmq.asyncio

from actors.worker.agent import Worker
from tests.helpers.procs import free_address
from transport import protocol as wire


class FakeScheduler:
    def __init__(self, address: str) -> None:
        self.sock = zmq.asyncio.Context.instance().socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.bind(address)
        self.address = address
        self.peer = b""
        self.seq = 0
        self.frames: list[wire.Message] = []
        # How ``serve`` answers: as a leader (the default), not at all (``silent``), or as
        # a standby naming ``standby`` (a str, "" for no leader known); ``answer`` may
        # reply to any other request.
        self.silent = False
        self.standby: str | None = None
        self.term = 1
        self.instance = "fake"
        # The database it serves: in its Welcome and NotLeader; a worker hello from
        # another one is refused, as the real dispatcher refuses it ("": names none).
        self.database_id = ""
        self.answer: Callable[[wire.Message], wire.Message | None] = lambda message: None

    async def recv(self, kind: type, timeout: float = 10.0) -> Any:
        """The next frame of type ``kind`` (earlier ones are kept in ``frames``)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not await self.sock.poll(int(left * 1000)):
                raise TimeoutError(f"no {kind.__name__} from the worker")
            self.peer, frame = await self.sock.recv_multipart()
            assert len(frame) <= wire.MAX_FRAME_BYTES
            message = wire.decode_request(frame)
            self.frames.append(message)
            if isinstance(message, kind):
                return message

    async def send(self, message: wire.Message) -> None:
        await self.sock.send_multipart([self.peer, wire.encode(message)])

    async def serve(self, lease: float = 5.0, interval: float = 0.1) -> None:
        """Answer until cancelled (see ``silent``, ``standby``, ``answer``): a Welcome to
        every hello, an ack to every heartbeat and every Results frame."""
        while True:
            self.peer, frame = await self.sock.recv_multipart()
            message = wire.decode_request(frame)
            self.frames.append(message)
            if self.silent:
                continue
            if self.standby is not None:
                rid = getattr(message, "request_id", 0)
                await self.send(wire.NotLeader(rid, self.standby, self.term, self.database_id))
                continue
            reply: wire.Message | None
            match message:
                case wire.WorkerHello(database_id=theirs) if (
                    theirs and self.database_id and theirs != self.database_id
                ):
                    reply = wire.ErrorReply("other_database", f"this one serves {self.database_id}")
                case wire.WorkerHello() | wire.ClientHello():
                    reply = wire.Welcome(
                        wire.PROTOCOL_VERSION, interval, self.instance, lease, self.term,
                        self.database_id, f"database at {self.address}",
                    )  # fmt: skip
                case wire.Heartbeat(sent_at=sent_at):
                    reply = wire.HeartbeatAck(sent_at)
                case wire.Results(results=results):
                    reply = wire.ResultsAck([r.job_id for r in results], [])
                case _:
                    reply = self.answer(message)
            if reply is not None:
                await self.send(reply)

    def reported(self) -> list[wire.JobResult]:
        """Every job result received (a Results frame may carry only freed slots)."""
        return [r for m in self.frames if isinstance(m, wire.Results) for r in m.results]

    async def until_reported(self, count: int = 1, timeout: float = 10.0) -> list[wire.JobResult]:
        deadline = time.monotonic() + timeout
        while len(self.reported()) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(self.reported())} results came, not {count}")
            await asyncio.sleep(0.01)
        return self.reported()

    def count(self, kind: type) -> int:
        return sum(isinstance(m, kind) for m in self.frames)

    async def until(self, kind: type, count: int = 1, timeout: float = 10.0) -> Any:
        """While ``serve`` runs: wait until ``count`` frames of ``kind`` came; the last."""
        deadline = time.monotonic() + timeout
        while self.count(kind) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.count(kind)} {kind.__name__} came, not {count}")
            await asyncio.sleep(0.01)
        return [m for m in self.frames if isinstance(m, kind)][-1]

    def close(self) -> None:
        self.sock.close(linger=0)

    async def welcome(self, lease: float = 5.0, interval: float = 0.1) -> wire.WorkerHello:
        hello = await self.recv(wire.WorkerHello)
        await self.send(wire.Welcome(wire.PROTOCOL_VERSION, interval, "fake", lease))
        return hello  # type: ignore[no-any-return]

    async def assign(self, *assignments: wire.Assignment, basis: float | None = None) -> int:
        self.seq += 1
        sent_at = time.monotonic() if basis is None else basis
        await self.send(wire.Assign(list(assignments), self.seq, sent_at))
        return self.seq

    async def results(self, count: int, timeout: float = 10.0) -> list[wire.JobResult]:
        got: list[wire.JobResult] = []
        while len(got) < count:
            frame = await self.recv(wire.Results, timeout)
            got += frame.results
        return got


@asynccontextmanager
async def worker_on_fake(**options: Any) -> AsyncIterator[tuple[FakeScheduler, Worker]]:
    """A FakeScheduler on a free address and a running Worker named "w" (``options`` go to
    ``Worker``) connected to it; at the end the worker stops at once and the socket closes."""
    scheduler = FakeScheduler(free_address())
    worker = Worker(scheduler.address, name="w", **options)
    serving = asyncio.create_task(worker.run())
    try:
        yield scheduler, worker
    finally:
        worker.stop()
        worker.stop()  # at once: the test is over
        await asyncio.wait_for(serving, 10)
        scheduler.sock.close()
