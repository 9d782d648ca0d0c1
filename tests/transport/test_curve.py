"""CURVE on real ZeroMQ sockets (and the in-memory model of it): a known key gets through
with its role in the peer id, which it cannot forge; an unknown key, or a client expecting
another server key, fails its handshake and nothing it sends arrives."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import pytest
import zmq
import zmq.utils.monitor

from tests.helpers.procs import free_address
from transport import ClientKeys, ServerKeys, bind, connect, identity
from transport.curve import configure_client, routing_id


def pair() -> tuple[bytes, bytes]:
    public, secret = zmq.curve_keypair()
    return public, secret


SERVER = pair()
WORKER = pair()
CLIENT = pair()
STRANGER = pair()
ROLES = {WORKER[0].decode(): "worker", CLIENT[0].decode(): "client"}


def server_keys(authorize: Callable[[str], str | None] = ROLES.get) -> ServerKeys:
    return ServerKeys(SERVER[0], SERVER[1], authorize)


def client_keys(own: tuple[bytes, bytes], server: bytes = SERVER[0]) -> ClientKeys:
    return ClientKeys(own[0], own[1], server)


HANDSHAKE_FAILED = (
    zmq.EVENT_HANDSHAKE_FAILED_AUTH
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
)


class Monitored:
    """A DEALER configured as ``transport.curve`` configures a client (or plain), whose
    events are watched from before it connects: none can be missed."""

    def __init__(self, address: str, keys: ClientKeys | None) -> None:
        self.sock = zmq.Context.instance().socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        if keys is not None:
            configure_client(self.sock, keys)
        self.monitor = self.sock.get_monitor_socket()
        self.sock.connect(address)

    async def failed(self, timeout: float = 10.0, events: int = HANDSHAKE_FAILED) -> int:
        """Until the socket reports a failed handshake (or another of ``events``)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            if self.monitor.poll(0):
                event = zmq.utils.monitor.recv_monitor_message(self.monitor)
                if int(event["event"]) & events:
                    return int(event["event"])
            else:
                await asyncio.sleep(0.01)
        raise AssertionError("no failed handshake reported")

    def close(self) -> None:
        self.sock.disable_monitor()
        self.monitor.close(linger=0)
        self.sock.close(linger=0)


@pytest.mark.parametrize("scheme", ["tcp", "mem"])
async def test_a_known_key_gets_through_with_its_role_and_the_reply_finds_it(scheme: str) -> None:
    address = free_address() if scheme == "tcp" else "mem://curve-known"
    server = bind(address, server_keys())
    worker = connect(server.address, client_keys(WORKER))
    client = connect(server.address, client_keys(CLIENT))
    try:
        worker.send(b"hello from a worker")
        client.send(b"hello from a client")
        got: dict[bytes, bytes] = {}
        while len(got) < 2:
            for peer, frame in await asyncio.wait_for(server.recv_batch(), 10):
                got[frame] = peer
        who = identity(got[b"hello from a worker"])
        assert who is not None
        assert (who.role, who.key) == ("worker", WORKER[0].decode())
        who = identity(got[b"hello from a client"])
        assert who is not None
        assert (who.role, who.key) == ("client", CLIENT[0].decode())
        server.send(got[b"hello from a client"], b"reply")
        assert await asyncio.wait_for(client.recv_batch(), 10) == [b"reply"]
    finally:
        for end in (worker, client, server):
            await end.close()


@pytest.mark.parametrize(
    ("keys", "events"),
    [
        (client_keys(STRANGER), zmq.EVENT_HANDSHAKE_FAILED_AUTH),  # a key not listed
        (client_keys(CLIENT, server=STRANGER[0]), HANDSHAKE_FAILED),  # expects another server
        (None, HANDSHAKE_FAILED | zmq.EVENT_DISCONNECTED),  # no keys: just dropped
    ],
    ids=["unknown-key", "other-server-key", "plain"],
)
async def test_a_peer_that_fails_the_handshake_gets_nothing_through(
    keys: ClientKeys | None, events: int
) -> None:
    server = bind(free_address(), server_keys())
    outsider = Monitored(server.address, keys)
    known = connect(server.address, client_keys(CLIENT))
    try:
        outsider.sock.send(b"let me in")
        assert await outsider.failed(events=events) & events
        known.send(b"after")
        frames = await asyncio.wait_for(server.recv_batch(), 10)
        assert [frame for _, frame in frames] == [b"after"], "the outsider's frame never came"
    finally:
        outsider.close()
        await known.close()
        await server.close()


async def test_a_chosen_routing_id_does_not_inherit_another_keys_identity() -> None:
    """A client may pick its routing id; one picked after a worker with that id left
    is still seen with its own key (read from each frame, never cached by id)."""
    server = bind(free_address(), server_keys())
    try:
        seen: list[bytes] = []
        for own in (WORKER, CLIENT):
            sock = zmq.Context.instance().socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 0)
            sock.routing_id = b"same-id"
            sock.curve_secretkey, sock.curve_publickey = own[1], own[0]
            sock.curve_serverkey = SERVER[0]
            sock.connect(server.address)
            sock.send(b"frame")
            [(peer, _)] = await asyncio.wait_for(server.recv_batch(), 10)
            seen.append(peer)
            sock.close(linger=0)
            while True:  # until the server has noticed the disconnect (the id is free)
                try:
                    server.send(peer, b"ping")
                except Exception:
                    break
                await asyncio.sleep(0.02)
        assert [routing_id(p) for p in seen] == [b"same-id", b"same-id"]
        roles = [identity(p) for p in seen]
        assert [r.role if r else None for r in roles] == ["worker", "client"]
    finally:
        await server.close()


def test_the_memory_transport_refuses_as_curve_does() -> None:
    async def run() -> None:
        server = bind("mem://curve-refuse", server_keys())
        stranger = connect("mem://curve-refuse", client_keys(STRANGER))
        wrong = connect("mem://curve-refuse", client_keys(CLIENT, server=STRANGER[0]))
        plain = connect("mem://curve-refuse")
        known = connect("mem://curve-refuse", client_keys(CLIENT))
        try:
            for end in (stranger, wrong, plain, known):
                end.send(b"x")
            [(peer, _)] = await asyncio.wait_for(server.recv_batch(), 5)
            who = identity(peer)
            assert who is not None
            assert who.role == "client"
        finally:
            for end in (stranger, wrong, plain, known, server):
                await end.close()

    asyncio.run(run())


async def test_without_keys_a_peer_id_is_only_a_routing_id_whatever_its_bytes() -> None:
    """A routing id may hold any bytes, '|' and 'admin:' included (libzmq's own ids count
    up through 0x7c): without keys none of it is taken for a proven identity."""
    server = bind(free_address())
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.routing_id = b"admin:forged|x"
    sock.connect(server.address)
    try:
        sock.send(b"frame")
        [(peer, _)] = await asyncio.wait_for(server.recv_batch(), 10)
        assert peer == b"admin:forged|x"
        assert server.identity(peer) is None
    finally:
        sock.close(linger=0)
        await server.close()


def test_unknown_keys_are_logged_once_a_second_with_a_count_not_once_each(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Anyone who reaches the port can offer keys: 1,500 unknown ones made 1,500 lines."""
    from types import SimpleNamespace

    from transport import curve

    authenticator = curve._Authenticator(zmq.Context.instance())
    authenticator.servers["d"] = SimpleNamespace(authorize=lambda key: None)  # type: ignore[assignment]
    with caplog.at_level(logging.INFO, "transport.curve"):
        for _ in range(1500):
            assert not authenticator.callback("d", b"K" * 40)
    assert len([r for r in caplog.records if "unknown key" in r.getMessage()]) == 1
