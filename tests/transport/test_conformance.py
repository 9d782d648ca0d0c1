"""One conformance suite, run against every transport implementation."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

import transport
from tests.helpers.procs import free_address
from transport.errors import AddressInUse, Closed, PeerGone, UnknownAddress

_names = itertools.count()


def _mem(tmp: Path) -> str:
    return f"mem://conformance-{next(_names)}"


def _tcp(tmp: Path) -> str:
    return free_address()


def _ipc(tmp: Path) -> str:
    return f"ipc://{tmp}/corral-{next(_names)}.sock"


def _inproc(tmp: Path) -> str:
    return f"inproc://conformance-{uuid.uuid4().hex}"


ADDRESSES: dict[str, Callable[[Path], str]] = {
    "mem": _mem,
    "tcp": _tcp,
    "ipc": _ipc,
    "inproc": _inproc,
}


@pytest.fixture(params=sorted(ADDRESSES))
async def server(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[transport.ServerTransport]:
    srv = transport.bind(ADDRESSES[request.param](tmp_path))
    yield srv
    await srv.close()


async def _recv(srv: transport.ServerTransport, n: int) -> list[tuple[bytes, bytes]]:
    got: list[tuple[bytes, bytes]] = []
    while len(got) < n:
        got += await asyncio.wait_for(srv.recv_batch(), 5)
    return got


async def test_frames_from_a_client_arrive_in_order_with_a_stable_peer_id(
    server: transport.ServerTransport,
) -> None:
    client = transport.connect(server.address)
    try:
        for i in range(100):
            client.send(b"frame-%d" % i)
        got = await _recv(server, 100)
        assert [f for _, f in got] == [b"frame-%d" % i for i in range(100)]
        assert len({peer for peer, _ in got}) == 1
    finally:
        await client.close()


async def test_replies_reach_the_right_client(server: transport.ServerTransport) -> None:
    a, b = transport.connect(server.address), transport.connect(server.address)
    try:
        a.send(b"from-a")
        b.send(b"from-b")
        peers = {frame: peer for peer, frame in await _recv(server, 2)}
        server.send(peers[b"from-b"], b"to-b")
        server.send(peers[b"from-a"], b"to-a")
        assert await asyncio.wait_for(a.recv_batch(), 5) == [b"to-a"]
        assert await asyncio.wait_for(b.recv_batch(), 5) == [b"to-b"]
    finally:
        await a.close()
        await b.close()


async def test_a_burst_is_received_in_few_batches(server: transport.ServerTransport) -> None:
    client = transport.connect(server.address)
    try:
        for i in range(2000):
            client.send(b"%d" % i)
        await asyncio.sleep(0.2)
        batches = 0
        got = 0
        while got < 2000:
            got += len(await asyncio.wait_for(server.recv_batch(), 5))
            batches += 1
        assert batches < 100
    finally:
        await client.close()


async def test_sending_to_an_unknown_peer_raises_peer_gone(
    server: transport.ServerTransport,
) -> None:
    with pytest.raises(PeerGone):
        server.send(b"no-such-peer", b"hello")


async def test_closing_wakes_a_pending_receiver_with_closed(
    server: transport.ServerTransport,
) -> None:
    receiver = asyncio.ensure_future(server.recv_batch())
    await asyncio.sleep(0.05)
    await server.close()
    with pytest.raises(Closed):
        await asyncio.wait_for(receiver, 5)


async def test_binding_an_address_twice_is_refused(tmp_path: Path) -> None:
    for make in (_mem, _tcp, _ipc):
        address = make(tmp_path)
        first = transport.bind(address)
        try:
            with pytest.raises(AddressInUse):
                transport.bind(first.address)
        finally:
            await first.close()


def test_an_unknown_scheme_is_refused_with_the_supported_ones() -> None:
    with pytest.raises(UnknownAddress, match="tcp://HOST:PORT"):
        transport.bind("http://127.0.0.1:80")


async def test_thousands_of_round_trips_never_stall(server: transport.ServerTransport) -> None:
    """Both ends send while their reader is waiting, which (on ZeroMQ) may consume the
    descriptor's edge for a frame that has arrived: a lost wake-up would stall a round."""
    client = transport.connect(server.address)

    async def echo() -> None:
        while True:
            for peer, frame in await server.recv_batch():
                server.send(peer, frame)

    echoing = asyncio.create_task(echo())
    try:
        for i in range(3000):
            sent = [b"%d" % i] * (1 + i % 3)  # one, two or three frames a round
            for frame in sent:
                client.send(frame)
            got: list[bytes] = []
            while len(got) < len(sent):
                got += await asyncio.wait_for(client.recv_batch(), 5)
            assert got == sent
    finally:
        echoing.cancel()
        await asyncio.gather(echoing, return_exceptions=True)
        await client.close()


async def test_a_frame_that_arrives_while_the_server_sends_still_wakes_its_reader(
    server: transport.ServerTransport,
) -> None:
    """On ZeroMQ a send may swallow the descriptor's signal for a frame that has just
    arrived; the transport must notice, or the waiting reader sleeps on a ready frame."""
    client = transport.connect(server.address)
    try:
        client.send(b"hello")
        [(peer, _)] = await _recv(server, 1)
        reader = asyncio.create_task(server.recv_batch())
        await asyncio.sleep(0.01)  # the reader is now waiting
        for i in range(20):
            client.send(b"request-%d" % i)
            time.sleep(0.005)  # noqa: ASYNC251 (held loop: the frame lands meanwhile)
            server.send(peer, b"unsolicited-%d" % i)  # ...and this send sees it first
            assert await asyncio.wait_for(reader, 2) == [(peer, b"request-%d" % i)]
            reader = asyncio.create_task(server.recv_batch())
            await asyncio.sleep(0.002)
        reader.cancel()
    finally:
        await client.close()
