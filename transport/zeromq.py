"""ZeroMQ transport: ROUTER (scheduler) and DEALER (workers, clients) over tcp://, ipc://, inproc://.

Why not ``zmq.asyncio``: it costs about 40 µs per received message. Here the
socket's own file descriptor is watched with ``loop.add_reader`` and every
wake-up drains the socket with non-blocking receives, so a burst of frames
costs one wake-up. ZeroMQ's descriptor is edge-triggered and any socket call
may consume the edge, so ``ZMQ_EVENTS`` is re-checked before every wait and
after every send.

The hot calls use pyzmq's plain ``recv``/``send``/``get`` with integer flags:
``recv_multipart``/``send_multipart`` and the enum-typed flags cost 2-3 times
as much per frame (measured here: 4.4 against 1.5 µs to receive one
two-part message, 6.5 against 3.0 µs to send one), and a drained socket is
detected with ``ZMQ_EVENTS`` (1.5 µs) instead of a raised ``zmq.Again`` (4-5 µs).

ROUTER_MANDATORY is on: a reply to a vanished peer raises instead of being
dropped silently (libzmq drops by default).

With keys (``transport.curve``) every connection is CURVE-encrypted and authenticated;
the server reads each frame's ``User-Id`` and puts it in front of the peer id.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable

import zmq

from transport import curve
from transport.base import ClientTransport, Peer, ServerTransport
from transport.curve import ClientKeys, ServerKeys
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
# Frames queued on the server for one peer that does not read them (its replies): a peer
# that sends requests and never reads costs the server at most this many frames; past it
# a send to that peer fails as if the peer were gone (its frame is dropped). Replies are
# one per request and events four frames per subscription, so a reading peer never nears it.
SERVER_SEND_QUEUE = 10_000


# Plain ints: pyzmq's flag enums build a new enum object on every | and &.
_NOBLOCK = int(zmq.NOBLOCK)
_MORE = int(zmq.NOBLOCK | zmq.SNDMORE)
_RCVMORE = int(zmq.RCVMORE)
_EVENTS = int(zmq.EVENTS)
_POLLIN = int(zmq.POLLIN)


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
        self.user_ids = False  # prefix the first part with the second's User-Id (CURVE)
        self._loop = asyncio.get_running_loop()
        self._fd: int = self.sock.getsockopt(zmq.FD)  # type: ignore[assignment]
        # EVENTS and RCVMORE are integer options (pyzmq types every option as int | bytes).
        self._get: Callable[[int], int] = self.sock.get  # type: ignore[assignment]
        self._loop.add_reader(self._fd, self._readable.set)

    def _readable_now(self) -> bool:
        return bool(self._get(_EVENTS) & _POLLIN)

    async def recv_batch(self, max_frames: int) -> list[list[bytes]]:
        while True:
            if self._closed:
                raise Closed("socket closed")
            batch = self._drain(max_frames)
            if batch:
                return batch
            # _drain stopped on a ZMQ_EVENTS without POLLIN (or on zmq.Again), which re-arms
            # the descriptor: the next frame to arrive signals it and sets the event again.
            self._readable.clear()
            await self._readable.wait()

    def _drain(self, max_frames: int) -> list[list[bytes]]:
        """Every whole message waiting, up to ``max_frames``, without blocking."""
        recv, get = self.sock.recv, self._get
        batch: list[list[bytes]] = []
        try:
            while len(batch) < max_frames and get(_EVENTS) & _POLLIN:
                parts = [recv(_NOBLOCK)]
                if self.user_ids and get(_RCVMORE):
                    # Who sent it, as the CURVE handshake proved: read from every frame.
                    frame = recv(_NOBLOCK, copy=False)
                    user = str(frame.get("User-Id")).encode("ascii")
                    parts = [user + curve.SEPARATOR + parts[0], frame.bytes]
                while get(_RCVMORE):  # the parts of one message arrive together
                    parts.append(recv(_NOBLOCK))
                batch.append(parts)
        except zmq.Again:  # not expected after POLLIN; the next wake-up reads on
            pass
        return batch

    def send(self, parts: list[bytes]) -> None:
        if self._closed:
            raise Closed("socket closed")
        sock = self.sock
        try:
            # copy=True (the default): our frames are small, and zero-copy sends cost a
            # pyzmq GC-thread round trip per frame (14% of the scheduler's time in a profile).
            for part in parts[:-1]:
                sock.send(part, _MORE)
            sock.send(parts[-1], _NOBLOCK)
        finally:
            # A send may have consumed the descriptor's edge for pending input.
            if self._readable_now():
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
    def __init__(self, address: str, keys: ServerKeys | None = None) -> None:
        if _ipc_in_use(address):
            raise AddressInUse(address, "another process is listening on that socket file")
        self._s = _Socket(zmq.ROUTER)
        self._s.sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self._s.sock.setsockopt(zmq.SNDHWM, SERVER_SEND_QUEUE)
        self._domain = ""
        try:
            if keys is not None:
                self._domain = curve.configure_server(self._s.sock, keys)
                self._s.user_ids = self.keyed = True
            self._s.sock.bind(_bindable(address))
        except (zmq.ZMQError, TransportError) as exc:
            self._s.close()
            curve.release(self._domain)
            if isinstance(exc, TransportError):
                raise
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
            self._s.send([curve.routing_id(peer) if self._domain else peer, frame])
        except zmq.ZMQError as exc:
            if exc.errno == zmq.EHOSTUNREACH:
                raise PeerGone(f"peer {peer.hex()} disconnected") from None
            if exc.errno == zmq.EAGAIN:
                raise PeerGone(f"peer {peer.hex()} is not reading (send queue full)") from None
            raise

    async def close(self) -> None:
        self._s.close()
        if self._domain:
            curve.release(self._domain)
            self._domain = ""


class ZmqClient(ClientTransport):
    def __init__(self, address: str, keys: ClientKeys | None = None) -> None:
        self.address = address
        self._s = _Socket(zmq.DEALER)
        try:
            if keys is not None:
                curve.configure_client(self._s.sock, keys)
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
