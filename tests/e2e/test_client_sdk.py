"""The client SDK's promises about sizes, time and restarts, against a fake scheduler on a
real ZeroMQ ROUTER socket (it answers exactly as the test says) and against real processes:
an oversized job is refused before it is sent, a refusal carrying the request id reaches its
caller at once, an unanswered request says it timed out (not that no scheduler exists), a
scheduler restart resends what is safe to repeat, and a client that cannot connect leaves no
task behind."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import zmq

from actors.client import AsyncClient, Client, job_spec
from actors.errors import RequestLost, RequestRefused, RequestTimedOut, SchedulerUnreachable
from tests.helpers.cluster import Cluster
from tests.helpers.procs import ROOT, free_address
from transport import protocol as wire

# What the fake answers to one request: replies (possibly none).
Answer = Callable[[wire.ToScheduler], list[wire.Message]]


class FakeScheduler:
    """A ROUTER socket in a thread that answers hellos with a Welcome of ``instance`` and
    every other request with what ``answer`` returns. Records every request it read."""

    def __init__(self, address: str, answer: Answer, instance: str = "one") -> None:
        self.address, self.answer, self.instance = address, answer, instance
        self.received: list[wire.ToScheduler] = []
        self.hellos = True  # False: ignore hellos too (a stopped scheduler)
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> FakeScheduler:
        self._thread.start()
        self._ready.wait(5)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _serve(self) -> None:
        sock = zmq.Context.instance().socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.bind(self.address)
        self._ready.set()
        try:
            while not self._stop.is_set():
                if not sock.poll(50):
                    continue
                peer, frame = sock.recv_multipart()
                try:
                    message = wire.decode_request(frame)
                except Exception as exc:  # a too-large frame, as the real gateway says
                    code = getattr(exc, "code", "bad_frame")
                    rid = getattr(exc, "request_id", 0)
                    sock.send_multipart([peer, wire.encode(wire.ErrorReply(code, str(exc), rid))])
                    continue
                self.received.append(message)
                if isinstance(message, wire.ClientHello):
                    replies: list[wire.Message] = (
                        [wire.Welcome(wire.PROTOCOL_VERSION, 1.0, self.instance)]
                        if self.hellos
                        else []
                    )
                else:
                    replies = self.answer(message)
                for reply in replies:
                    sock.send_multipart([peer, wire.encode(reply)])
        finally:
            sock.close()


def never(_: wire.ToScheduler) -> list[wire.Message]:
    return []


@pytest.fixture
def address() -> Iterator[str]:
    return free_address()


def test_an_oversized_job_is_refused_before_anything_is_sent(address: str) -> None:
    with FakeScheduler(address, never) as fake, Client(address, connect_timeout=5) as client:
        started = time.monotonic()
        with pytest.raises(RequestRefused) as refused:
            client.submit("tasks.add", ["x" * 10_000_000, "y"])
        assert time.monotonic() - started < 5, "refused at once, not after a timeout"
        assert refused.value.code == "too_large"
        text = str(refused.value)
        assert "10,000,0" in text
        assert f"{wire.MAX_JOB_PAYLOAD_BYTES:,}" in text
        assert "MAX_JOB_PAYLOAD_BYTES" in text
        assert not any(isinstance(m, wire.Submit) for m in fake.received)


async def test_a_frame_over_the_limit_is_refused_locally_and_many_big_jobs_are_split(
    address: str,
) -> None:
    def accept(message: wire.ToScheduler) -> list[wire.Message]:
        if isinstance(message, wire.Submit):
            ids = list(range(1, len(message.jobs) + 1))
            return [wire.Submitted(message.request_id, ids, [False] * len(ids))]
        return []

    with FakeScheduler(address, accept) as fake:
        async with AsyncClient(address, connect_timeout=5, request_timeout=10) as client:
            with pytest.raises(RequestRefused) as refused:
                client._send(wire.Submit(1, [wire.JobSpec("t", wire.pack(["x" * 9_000_000]))]))
            assert "MAX_FRAME_BYTES" in str(refused.value)
            # Ten jobs of 3 MB each: never more than two in one frame, every one sent.
            big = [job_spec("t", ["x" * 3_000_000]) for _ in range(10)]
            ids = await client.submit_many(big)
        assert len(ids) == 10
        frames = [m for m in fake.received if isinstance(m, wire.Submit)]
        assert sum(len(f.jobs) for f in frames) == 10
        assert max(len(f.jobs) for f in frames) <= 2


async def test_a_refusal_carrying_the_request_id_reaches_the_caller_at_once(
    address: str,
) -> None:
    def refuse(message: wire.ToScheduler) -> list[wire.Message]:
        rid = getattr(message, "request_id", 0)
        return [wire.ErrorReply("too_large", "frame of 9 bytes exceeds the limit", rid)]

    with FakeScheduler(address, refuse):
        async with AsyncClient(address, connect_timeout=5, request_timeout=60) as client:
            started = time.monotonic()
            with pytest.raises(RequestRefused) as refused:
                await client.status()
            assert time.monotonic() - started < 5
            assert refused.value.code == "too_large"


async def test_an_unanswered_request_says_it_timed_out_not_that_no_scheduler_exists(
    address: str,
) -> None:
    with FakeScheduler(address, never):
        async with AsyncClient(address, connect_timeout=5, request_timeout=1.0) as client:
            with pytest.raises(RequestTimedOut) as timed_out:
                await client.status()
    text = str(timed_out.value)
    assert "timed out after 1s" in text
    assert "(GetStatus)" in text
    assert "request " in text
    assert "no scheduler answered" not in text


async def test_a_scheduler_that_stops_answering_is_noticed_in_seconds(address: str) -> None:
    with FakeScheduler(address, never) as fake:
        async with AsyncClient(
            address, connect_timeout=5, request_timeout=60, silence_timeout=1.0
        ) as client:
            fake.hellos = False
            started = time.monotonic()
            with pytest.raises(RequestTimedOut) as timed_out:
                await client.status()
            assert time.monotonic() - started < 30, "long before the 60 s request timeout"
    assert "stopped answering" in str(timed_out.value)


async def test_after_a_restart_a_keyed_submission_is_resent_and_an_unkeyed_one_is_lost(
    address: str,
) -> None:
    answering = threading.Event()

    def after_restart(message: wire.ToScheduler) -> list[wire.Message]:
        if isinstance(message, wire.Submit) and answering.is_set():
            ids = list(range(1, len(message.jobs) + 1))
            return [wire.Submitted(message.request_id, ids, [True] * len(ids))]
        return []  # the old process swallowed it and died

    with FakeScheduler(address, after_restart) as fake:
        async with AsyncClient(address, connect_timeout=5, request_timeout=60) as client:
            keyed = asyncio.ensure_future(client.submit("t", idempotency_key="k"))
            unkeyed = asyncio.ensure_future(client.submit("t"))
            while sum(isinstance(m, wire.Submit) for m in fake.received) < 2:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
            fake.instance = "two"  # the next hello is answered by a new process
            answering.set()
            assert await asyncio.wait_for(keyed, 20) == 1
            with pytest.raises(RequestLost) as lost:
                await asyncio.wait_for(unkeyed, 20)
    assert "restarted" in str(lost.value)
    assert "may or may not" in str(lost.value)


def test_a_sync_client_that_cannot_connect_leaves_no_task_pending() -> None:
    script = (
        "from actors.client import Client\n"
        "from actors.errors import SchedulerUnreachable\n"
        f"try:\n    Client({free_address()!r}, connect_timeout=0.3)\n"
        "except SchedulerUnreachable as exc:\n    print('unreachable:', exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert "unreachable: no scheduler answered" in done.stdout
    assert "Task was destroyed" not in done.stderr, done.stderr
    assert done.stderr == ""


@pytest.mark.slow
def test_a_huge_payload_against_a_real_scheduler_fails_fast_and_it_keeps_serving(
    cluster: Cluster,
) -> None:
    cluster.start()
    with Client(cluster.address, connect_timeout=10) as client:
        with pytest.raises(RequestRefused, match="too_large"):
            client.submit("tasks.add", ["x" * 10_000_000, "y"])
        assert client.submit("record", [1]) == 1
    with pytest.raises(SchedulerUnreachable):
        Client(free_address(), connect_timeout=0.2)
