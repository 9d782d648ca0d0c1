"""CURVE on real ZeroMQ sockets (and the in-memory model of it): a known key gets through
with its role in the peer id, which it cannot forge; an unknown key, or a client expecting
another server key, fails its handshake and nothing it sends arrives."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
import zmq
import zmq.utils.monitor

from tests.helpers.procs import free_address
from transport import ClientKeys, ServerKeys, bind, connect, identity
from transport.curve import routing_id
from transport.zeromq import ZmqClient


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


async def handshake_failed(client: ZmqClient, timeout: float = 10.0) -> int:
    """Until the client's socket reports a failed handshake; the event."""
    monitor = client._s.sock.get_monitor_socket()
    failed = (
        zmq.EVENT_HANDSHAKE_FAILED_AUTH
        | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
        | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    )
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            if monitor.poll(0):
                event = zmq.utils.monitor.recv_monitor_message(monitor)
                if int(event["event"]) & failed:
                    return int(event["event"])
            else:
                await asyncio.sleep(0.01)
        raise AssertionError("no failed handshake reported")
    finally:
        client._s.sock.disable_monitor()
        monitor.close()


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


async def test_an_unknown_key_fails_its_handshake_and_nothing_it_sends_arrives() -> None:
    server = bind(free_address(), server_keys())
    stranger = connect(server.address, client_keys(STRANGER))
    known = connect(server.address, client_keys(CLIENT))
    try:
        assert isinstance(stranger, ZmqClient)
        stranger.send(b"let me in")
        assert await handshake_failed(stranger) == zmq.EVENT_HANDSHAKE_FAILED_AUTH
        known.send(b"after")
        frames = await asyncio.wait_for(server.recv_batch(), 10)
        assert [frame for _, frame in frames] == [b"after"], "the stranger's frame never came"
    finally:
        for end in (stranger, known, server):
            await end.close()


async def test_a_client_expecting_another_server_key_never_talks_to_this_one() -> None:
    server = bind(free_address(), server_keys())
    impostor_check = connect(server.address, client_keys(CLIENT, server=STRANGER[0]))
    known = connect(server.address, client_keys(CLIENT))
    try:
        assert isinstance(impostor_check, ZmqClient)
        impostor_check.send(b"to the wrong server")
        await handshake_failed(impostor_check)
        known.send(b"after")
        frames = await asyncio.wait_for(server.recv_batch(), 10)
        assert [frame for _, frame in frames] == [b"after"]
    finally:
        for end in (impostor_check, known, server):
            await end.close()


async def test_a_plain_client_cannot_talk_to_a_server_with_keys() -> None:
    server = bind(free_address(), server_keys())
    plain = connect(server.address)
    known = connect(server.address, client_keys(CLIENT))
    try:
        assert isinstance(plain, ZmqClient)
        plain.send(b"no keys")
        await handshake_failed(plain)
        known.send(b"after")
        frames = await asyncio.wait_for(server.recv_batch(), 10)
        assert [frame for _, frame in frames] == [b"after"]
    finally:
        for end in (plain, known, server):
            await end.close()


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
