"""In-memory transport: asyncio queues inside one process, for unit tests of actor logic.

Addresses are ``mem://NAME``. It honours the same interface and the same
framing (bytes in, bytes out) as ZeroMQ, so every decode and size check runs
exactly as in production; only the sockets are missing.

Keys are modelled as CURVE uses them: a server bound with ``ServerKeys`` drops every
frame from a client whose public key it does not authorize, or that expects another
server key (no reply, as a failed handshake), and prefixes the peer id of the others
with ``ROLE:KEY`` (``transport.curve.identity``).
"""

from __future__ import annotations

import asyncio
import itertools

from transport import curve
from transport.base import ClientTransport, Peer, ServerTransport
from transport.curve import ClientKeys, ServerKeys
from transport.errors import AddressInUse, Closed, PeerGone

_servers: dict[str, MemoryServer] = {}
_peer_ids = itertools.count(1)
_CLOSE = object()


async def _drain(queue: asyncio.Queue[object], max_frames: int) -> list[object]:
    first = await queue.get()
    if first is _CLOSE:
        queue.put_nowait(_CLOSE)  # wake any other receiver too
        raise Closed("transport closed")
    batch = [first]
    while len(batch) < max_frames and not queue.empty():
        item = queue.get_nowait()
        if item is _CLOSE:
            queue.put_nowait(_CLOSE)
            break
        batch.append(item)
    return batch


class MemoryServer(ServerTransport):
    def __init__(self, address: str, keys: ServerKeys | None = None) -> None:
        if address in _servers:
            raise AddressInUse(address)
        self.address = address
        self.keys = keys
        self.keyed = keys is not None
        self._inbox: asyncio.Queue[object] = asyncio.Queue()
        self._clients: dict[Peer, MemoryClient] = {}
        _servers[address] = self

    async def recv_batch(self, max_frames: int = 1024) -> list[tuple[Peer, bytes]]:
        return await _drain(self._inbox, max_frames)  # type: ignore[return-value]

    def _peer(self, client: MemoryClient) -> Peer | None:
        """The client's peer id here; None if its key is refused (no handshake)."""
        if self.keys is None:
            return client.peer if client.keys is None else None
        keys = client.keys
        if keys is None or keys.server != self.keys.public:
            return None
        key = keys.public.decode("ascii")
        role = self.keys.authorize(key)
        if role is None:
            return None
        return f"{role}:{key}".encode() + curve.SEPARATOR + client.peer

    def send(self, peer: Peer, frame: bytes) -> None:
        client = self._clients.get(peer)
        if client is None:
            raise PeerGone(f"peer {peer!r} is not connected")
        client._inbox.put_nowait(bytes(frame))

    async def close(self) -> None:
        _servers.pop(self.address, None)
        self._inbox.put_nowait(_CLOSE)


class MemoryClient(ClientTransport):
    def __init__(self, address: str, keys: ClientKeys | None = None) -> None:
        self.address = address
        self.keys = keys
        self.peer: Peer = f"mem-{next(_peer_ids)}".encode()
        self._as: Peer | None = None  # our peer id at the server, once accepted
        self._inbox: asyncio.Queue[object] = asyncio.Queue()
        self._server: MemoryServer | None = None

    def _attach(self) -> MemoryServer | None:
        server = _servers.get(self.address)
        if server is not None and server is not self._server:
            self._as = server._peer(self)
            if self._as is None:
                return None  # refused: nothing it sends arrives
            server._clients[self._as] = self
            self._server = server
        return server

    async def recv_batch(self, max_frames: int = 1024) -> list[bytes]:
        return await _drain(self._inbox, max_frames)  # type: ignore[return-value]

    def send(self, frame: bytes) -> None:
        # Like ZeroMQ, a client may send before the server exists; the frame is
        # dropped then, and the client's own timeout reports the absent server.
        server = self._attach()
        if server is not None and self._as is not None:
            server._inbox.put_nowait((self._as, bytes(frame)))

    async def close(self) -> None:
        if self._server is not None and self._as is not None:
            self._server._clients.pop(self._as, None)
        self._inbox.put_nowait(_CLOSE)
