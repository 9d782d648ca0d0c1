"""Errors of the transport layer, under one root: ``TransportError``, itself a
``CorralError`` (``actors.errors``), so catching that catches every corral error."""

from __future__ import annotations

from actors.errors import CorralError


class TransportError(CorralError):
    """Root of every transport error."""


class BadFrame(TransportError):
    """Raised when a frame is too large, is not msgpack, or does not match the protocol.

    ``code`` is the stable machine-readable reason sent back in the error reply.
    """

    def __init__(self, code: str, message: str, request_id: int = 0) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.request_id = request_id  # of the refused request, when it could be read


class UnknownAddress(TransportError):
    """Raised when an address has a scheme no transport serves (e.g. ``http://``)."""

    def __init__(self, address: str) -> None:
        super().__init__(
            f"unsupported address {address!r}: use tcp://HOST:PORT, ipc:///PATH, "
            "inproc://NAME or mem://NAME"
        )
        self.address = address


class AddressInUse(TransportError):
    """Raised when binding an address another server already holds."""

    def __init__(self, address: str, reason: str = "") -> None:
        super().__init__(f"cannot bind {address}: already in use{': ' + reason if reason else ''}")
        self.address = address


class PeerGone(TransportError):
    """Raised when sending to a peer that has disconnected (we did not close it; it left)."""


class Closed(TransportError):
    """Raised when using a transport after we closed it."""
