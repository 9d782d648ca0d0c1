"""ZeroMQ transport: ROUTER (scheduler) and DEALER (workers, clients) over tcp://, ipc://, inproc://.

Why not ``zmq.asyncio``: it costs about 40 µs per received message. Here the
socket's own file descriptor is watched with ``loop.add_reader`` and every
wake-up drains the socket with non-blocking receives, so a burst of frames
costs one wake-up. ZeroMQ's descriptor is edge-triggered and any socket call
may consume the edge, so ``ZMQ_EVENTS`` is re-checked before every wait and
after every send.

ROUTER_MANDATORY is on: a reply to a vanished peer raises instead of being
dropped silently (libzmq drops by default).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket

import zmq

from transport.base import ClientTransport, Peer, ServerTransport
from transport.errors import AddressInUse, Closed, PeerGone, TransportError
from transport.protocol import MAX_FRAME_BYTES

log = logging.getLogger(__name__)

# High-water marks count frames, and our frames are batches of up to ~1000
# jobs, so 100,000 frames is far beyond any healthy backlog.
HIGH_WATER_MARK = 100_000
# libzmq drops a connection whose message exceeds this. It is a hard memory
# guard set well above the protocol limit, so a merely oversized frame still
# reaches the gateway and gets a readable error reply.
HARD_MESSAGE_LIMIT = 4 * MAX_FRAME_BYTES


def _context() -> zmq.Context[zmq.Socket[bytes]]:
    return zmq.Context.instance()


class _Socket:
    """A non-blocking zmq socket whose readability is an asyncio event."""

    def __init__(self, kind: int) -> None:
        self.sock: zmq.Socket[bytes] = _context().socket(kind)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.SNDHWM, HIGH_WATER_MARK)
        self.sock.setsockopt(zmq.RCVHWM, HIGH_WATER_MARK)
        self.sock.setsockopt(zmq.MAXMSGSIZE, HARD_MESSAGE_LIMIT)
        self._readable = asyncio.Event()
        self._closed = False
        self._loop = asyncio.get_running_loop()
        self._fd: int = self.sock.getsockopt(zmq.FD)  # type: ignore[assignment]
        self._loop.add_reader(self._fd, self._readable.set)

    def _events(self) -> int:
        events: int = self.sock.getsockopt(zmq.EVENTS)  # type: ignore[assignment]
        return events

    async def recv_batch(self, max_frames: int) -> list[list[bytes]]:
        while True:
            if self._closed:
                raise Closed("socket closed")
            batch: list[list[bytes]] = []
            try:
                while len(batch) < max_frames:
                    batch.append(self.sock.recv_multipart(zmq.NOBLOCK))
            except zmq.Again:
                pass
            if batch:
                return batch
            self._readable.clear()
            if self._events() & zmq.POLLIN:
                continue
            await self._readable.wait()

    def send(self, parts: list[bytes]) -> None:
        if self._closed:
            raise Closed("socket closed")
        try:
            # copy=True: our frames are small, and zero-copy sends cost a pyzmq GC-thread
            # round trip per frame (14% of the scheduler's time in a profile).
            self.sock.send_multipart(parts, zmq.NOBLOCK, copy=True)
        finally:
            # A send may have consumed the descriptor's edge for pending input.
            if self._events() & zmq.POLLIN:
                self._readable.set()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._loop.remove_reader(self._fd)
        self.sock.close(linger=0)
        self._readable.set()


def _bindable(address: str) -> str:
    # Port 0 means "any free port", as with plain sockets; libzmq spells it '*'.
    if address.startswith("tcp://") and address.endswith(":0"):
        return address[:-1] + "*"
    return address


def _ipc_in_use(address: str) -> bool:
    """libzmq silently takes over an ipc:// path another process listens on; check first."""
    path = address.removeprefix("ipc://")
    if not address.startswith("ipc://") or not os.path.exists(path):
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        return probe.connect_ex(path) == 0


class ZmqServer(ServerTransport):
    def __init__(self, address: str) -> None:
        if _ipc_in_use(address):
            raise AddressInUse(address, "another process is listening on that socket file")
        self._s = _Socket(zmq.ROUTER)
        self._s.sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        try:
            self._s.sock.bind(_bindable(address))
        except zmq.ZMQError as exc:
            self._s.close()
            if exc.errno == zmq.EADDRINUSE:
                raise AddressInUse(address, str(exc)) from None
            raise TransportError(f"cannot bind {address}: {exc}") from None
        endpoint = self._s.sock.getsockopt(zmq.LAST_ENDPOINT)
        self.address = endpoint.decode() if isinstance(endpoint, bytes) and endpoint else address

    async def recv_batch(self, max_frames: int = 1024) -> list[tuple[Peer, bytes]]:
        out: list[tuple[Peer, bytes]] = []
        for parts in await self._s.recv_batch(max_frames):
            # A DEALER sends exactly one frame; anything else is garbage that
            # must still get an error reply, so it becomes an undecodable frame.
            out.append((parts[0], parts[1] if len(parts) == 2 else b""))
        return out

    def send(self, peer: Peer, frame: bytes) -> None:
        try:
            self._s.send([peer, frame])
        except zmq.ZMQError as exc:
            if exc.errno == zmq.EHOSTUNREACH:
                raise PeerGone(f"peer {peer.hex()} disconnected") from None
            if exc.errno == zmq.EAGAIN:
                raise PeerGone(f"peer {peer.hex()} is not reading (send queue full)") from None
            raise

    async def close(self) -> None:
        self._s.close()


class ZmqClient(ClientTransport):
    def __init__(self, address: str) -> None:
        self.address = address
        self._s = _Socket(zmq.DEALER)
        try:
            self._s.sock.connect(address)
        except zmq.ZMQError as exc:
            self._s.close()
            raise TransportError(f"cannot connect to {address}: {exc}") from None

    async def recv_batch(self, max_frames: int = 1024) -> list[bytes]:
        return [parts[-1] for parts in await self._s.recv_batch(max_frames)]

    def send(self, frame: bytes) -> None:
        try:
            self._s.send([frame])
        except zmq.Again:
            raise TransportError(f"send queue to {self.address} is full") from None

    async def close(self) -> None:
        self._s.close()
