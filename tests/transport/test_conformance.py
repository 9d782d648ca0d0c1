"""One conformance suite, run against every transport implementation."""

from __future__ import annotations

import asyncio
import itertools
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
