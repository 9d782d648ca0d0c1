"""Transports, chosen by address: tcp://, ipc://, inproc:// (ZeroMQ) and mem:// (in-memory).

``bind(address)`` gives the scheduler's end, ``connect(address)`` a worker's or
client's. Actors never know which implementation they run on.
"""

from __future__ import annotations

from transport.base import ClientTransport, Peer, ServerTransport
from transport.curve import ClientKeys, Identity, ServerKeys, identity
from transport.errors import UnknownAddress
from transport.memory import MemoryClient, MemoryServer
from transport.zeromq import ZmqClient, ZmqServer

_SERVERS: dict[str, type[ServerTransport]] = {
    "tcp": ZmqServer,
    "ipc": ZmqServer,
    "inproc": ZmqServer,
    "mem": MemoryServer,
}
_CLIENTS: dict[str, type[ClientTransport]] = {
    "tcp": ZmqClient,
    "ipc": ZmqClient,
    "inproc": ZmqClient,
    "mem": MemoryClient,
}


def _scheme(address: str) -> str:
    scheme, sep, rest = address.partition("://")
    if not sep or not rest or scheme not in _SERVERS:
        raise UnknownAddress(address)
    return scheme


def bind(address: str, keys: ServerKeys | None = None) -> ServerTransport:
    """Bind the scheduler's end of the transport at ``address`` (with ``keys``: every
    peer authenticated and its frames encrypted, see ``transport.curve``)."""
    return _SERVERS[_scheme(address)](address, keys)  # type: ignore[call-arg]


def connect(address: str, keys: ClientKeys | None = None) -> ClientTransport:
    """Connect a worker's or client's end to the scheduler at ``address``."""
    return _CLIENTS[_scheme(address)](address, keys)  # type: ignore[call-arg]


__all__ = [
    "ClientKeys",
    "ClientTransport",
    "Identity",
    "Peer",
    "ServerKeys",
    "ServerTransport",
    "bind",
    "connect",
    "identity",
]
