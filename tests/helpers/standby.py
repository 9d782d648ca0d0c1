"""A standby scheduler as workers and clients see it, for tests of following the leader:
a real ZeroMQ ROUTER socket, served by a thread (so it answers while a test blocks on a
subprocess), that answers every frame with ``wire.NotLeader`` naming ``leader`` (change
it at any time; "" while "no leader is known") and records what it was sent."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import zmq

from tests.helpers.procs import free_address
from transport import protocol as wire
from transport.errors import BadFrame


class FakeStandby:
    def __init__(self, leader: str, term: int = 1, address: str | None = None) -> None:
        self.address = address or free_address()
        self.leader = leader
        self.term = term
        self.received: list[wire.Message] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._sock = zmq.Context.instance().socket(zmq.ROUTER)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.bind(self.address)
        self._thread = threading.Thread(target=self._serve, daemon=True, name="fake-standby")
        self._thread.start()

    def _serve(self) -> None:
        try:
            while not self._stop.is_set():
                if not self._sock.poll(20):
                    continue
                peer, frame = self._sock.recv_multipart()
                try:
                    message: wire.Message | None = wire.decode_request(frame)
                except BadFrame:
                    message = None
                with self._lock:
                    if message is not None:
                        self.received.append(message)
                    rid = getattr(message, "request_id", 0)  # hellos, heartbeats... have none
                    reply = wire.NotLeader(rid, self.leader, self.term)
                self._sock.send_multipart([peer, wire.encode(reply)])
        finally:
            self._sock.close(linger=0)

    def count(self, kind: type) -> int:
        """How many frames of ``kind`` it was sent."""
        with self._lock:
            return sum(isinstance(m, kind) for m in self.received)

    def until(self, kind: type, count: int = 1, timeout: float = 20.0) -> None:
        """Wait (blocking) until it was sent ``count`` frames of ``kind``."""
        deadline = time.monotonic() + timeout
        while self.count(kind) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the standby got {self.count(kind)} {kind.__name__}")
            time.sleep(0.02)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


@contextmanager
def standby(leader: str, term: int = 1) -> Iterator[FakeStandby]:
    """A FakeStandby naming ``leader``, closed afterwards."""
    fake = FakeStandby(leader, term)
    try:
        yield fake
    finally:
        fake.close()
