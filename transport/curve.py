"""CURVE: who a peer is, proven by ZeroMQ, never claimed by the peer (issue 16).

A scheduler bound with ``ServerKeys`` encrypts every connection with its key pair and
lets a connection through only if ZeroMQ's ZAP handler accepts the client's public key:
``ServerKeys.authorize`` maps a key (Z85 text) to its role, or None for a key it does not
know, whose handshake then fails (the peer gets no reply at all). The ZAP handler runs on
the event loop of the scheduler (pyzmq's ``Authenticator``, its socket read with
``zmq.asyncio``), one per process, shared by every server bound with keys, each under its
own ZAP domain.

Every frame from an authenticated connection carries the ``User-Id`` ZeroMQ attached to
it at the handshake: ``ROLE:KEY``. The server transport prefixes the peer id with it
(``ROLE:KEY|routing-id``), so actors see a different peer for a different key, and read
the role and the key from the peer id alone (``identity``). It is read from each frame,
not cached by routing id: a client may choose its routing id, and one chosen after its
owner left must not inherit the owner's key.

``ClientKeys`` are a worker's or client's: its own pair and the scheduler's public key
(which it checks: a man in the middle without the scheduler's secret key cannot
complete the handshake).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import zmq
import zmq.asyncio
from zmq.auth.base import Authenticator
from zmq.utils import z85

from transport.errors import TransportError
from transport.ratelog import RateLimitedLog

log = logging.getLogger(__name__)

SEPARATOR = b"|"  # ends the identity prefix of a peer id (Z85 and roles never contain it)


@dataclass(frozen=True)
class Identity:
    """Who sent a frame, as the handshake proved it."""

    role: str
    key: str  # the public key, Z85 text (40 characters)


@dataclass(frozen=True)
class ServerKeys:
    """A scheduler's key pair (Z85 bytes) and its allow-list: ``authorize(key)`` is the
    role of a client's public key (Z85 text), None to refuse it, checked at each handshake;
    ``current_role(key)`` the same answer, cheap enough to ask on every frame (it may be a
    second late), so a key removed while connected is refused from then on."""

    public: bytes
    secret: bytes
    authorize: Callable[[str], str | None]
    current_role: Callable[[str], str | None] | None = None


@dataclass(frozen=True)
class ClientKeys:
    """A worker's or client's key pair and the scheduler's public key (Z85 bytes)."""

    public: bytes
    secret: bytes
    server: bytes = field(repr=False)


def identity(peer: bytes) -> Identity | None:
    """The identity a peer id carries (None: a peer of a server without keys)."""
    prefix, sep, _ = peer.partition(SEPARATOR)
    if not sep:
        return None
    role, _, key = prefix.decode("ascii", "replace").partition(":")
    return Identity(role, key)


def routing_id(peer: bytes) -> bytes:
    """The ZeroMQ routing id inside a peer id (the peer id itself without keys)."""
    prefix, sep, rest = peer.partition(SEPARATOR)
    return rest if sep else prefix


def configure_client(sock: zmq.Socket[bytes], keys: ClientKeys) -> None:
    """Make ``sock`` (before it connects) a CURVE client of the scheduler's key."""
    sock.curve_secretkey = keys.secret
    sock.curve_publickey = keys.public
    sock.curve_serverkey = keys.server


class _Authenticator(Authenticator):
    """pyzmq's ZAP handler, its requests read on the current event loop. Accepts a key if
    some server's ``authorize`` knows it, under that server's domain; its User-Id is
    ``ROLE:KEY``. Its socket is bound once per process and kept (closing it unbinds the
    ZAP endpoint only later, in libzmq's own thread, so binding it again at once fails);
    a new event loop (a test's) only gets a new reader."""

    def __init__(self, context: zmq.Context[zmq.Socket[bytes]]) -> None:
        super().__init__(context)
        self.servers: dict[str, ServerKeys] = {}
        self.loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        # Anyone who reaches the port can offer keys: one line a second, with a count.
        self.refused_log = RateLimitedLog(log, logging.INFO)

    def serve_on_this_loop(self) -> None:
        loop = asyncio.get_running_loop()
        if self.loop is loop:
            return
        if self.zap_socket is None:
            self.start()  # binds inproc://zeromq.zap.01
        if self._task is not None and not self._task.get_loop().is_closed():
            self._task.cancel()
        self.loop = loop
        self._task = loop.create_task(self._serve(), name="corral.zap")

    async def _serve(self) -> None:
        poller = zmq.asyncio.Poller()
        assert self.zap_socket is not None
        poller.register(self.zap_socket, zmq.POLLIN)
        while True:
            await poller.poll()
            while int(self.zap_socket.getsockopt(zmq.EVENTS)) & zmq.POLLIN:
                await self.handle_zap_message(self.zap_socket.recv_multipart())

    def callback(self, domain: str, key: bytes) -> bool:
        server = self.servers.get(domain)
        if server is None:
            return False
        role = server.authorize(key.decode("ascii"))
        if role is None:
            self.refused_log("refused an unknown key %s (domain %s)", key.decode("ascii"), domain)
        return role is not None

    def curve_user_id(self, client_public_key: bytes) -> str:
        key = z85.encode(client_public_key).decode("ascii")
        for server in self.servers.values():
            role = server.authorize(key)
            if role is not None:
                return f"{role}:{key}"
        return f"unknown:{key}"  # not reached: the handshake was refused


_authenticator: _Authenticator | None = None
_domains = itertools.count(1)


def configure_server(sock: zmq.Socket[bytes], keys: ServerKeys) -> str:
    """Make ``sock`` (before it binds) a CURVE server whose clients ZAP checks against
    ``keys.authorize``; returns its ZAP domain, for ``release``."""
    global _authenticator
    if _authenticator is None:
        _authenticator = _Authenticator(sock.context)
    auth = _authenticator
    try:
        auth.serve_on_this_loop()
    except zmq.ZMQError as exc:
        raise TransportError(f"cannot start the ZAP handler: {exc}") from None
    domain = f"corral-{next(_domains)}"
    auth.servers[domain] = keys
    auth.configure_curve_callback(domain, auth)
    sock.zap_domain = domain.encode()
    sock.curve_server = True
    sock.curve_secretkey = keys.secret
    sock.curve_publickey = keys.public
    return domain


def release(domain: str) -> None:
    """A server bound with keys closed: forget its domain (the handler stays)."""
    auth = _authenticator
    if auth is not None:
        auth.servers.pop(domain, None)
        auth.credentials_providers.pop(domain, None)
