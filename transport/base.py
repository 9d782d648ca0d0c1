"""The transport interface: one server end (the scheduler) and many client ends.

Frames are opaque ``bytes``; decoding is the receiver's job (see
``transport.protocol``). A server sees each client end as an opaque ``peer``
id. Receiving is batched: ``recv_batch`` returns every frame that is already
waiting (at least one), so a busy receiver pays one wake-up per batch, not
per frame. Sending never blocks the event loop.
"""

from __future__ import annotations

import abc

from transport.curve import Identity
from transport.curve import identity as identity_of

Peer = bytes


class ServerTransport(abc.ABC):
    """The bound end: many peers, addressed by their peer id."""

    address: str

    @abc.abstractmethod
    async def recv_batch(self, max_frames: int = 1024) -> list[tuple[Peer, bytes]]:
        """Wait for at least one frame, return all that are ready (up to max_frames)."""

    @abc.abstractmethod
    def send(self, peer: Peer, frame: bytes) -> None:
        """Queue one frame for ``peer``; raise PeerGone if it is not connected."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop serving; pending receivers get Closed."""

    keyed = False  # bound with keys: every peer id carries the identity it proved

    def identity(self, peer: Peer) -> Identity | None:
        """Who ``peer`` is, as its CURVE handshake proved (None without keys: a peer id
        is then only a routing id, whatever bytes it holds)."""
        return identity_of(peer) if self.keyed else None


class ClientTransport(abc.ABC):
    """The connecting end: one server."""

    address: str

    @abc.abstractmethod
    async def recv_batch(self, max_frames: int = 1024) -> list[bytes]:
        """Wait for at least one frame from the server, return all that are ready."""

    @abc.abstractmethod
    def send(self, frame: bytes) -> None:
        """Queue one frame for the server without blocking."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Disconnect; pending receivers get Closed."""
