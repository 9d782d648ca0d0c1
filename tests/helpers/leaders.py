"""Telling leaders from standbys in tests of several schedulers on one PostgreSQL database:
a raw hello (a leader answers Welcome with its term, a standby NotLeader naming the
leader), waiting until one of several addresses leads with a newer term, and the leader
row as the database has it."""

from __future__ import annotations

import asyncio
import contextlib
import time

import asyncpg

from transport import connect
from transport import protocol as wire
from transport.errors import TransportError

# A takeover is TTL (2 s) + a poll (0.25 s) + loading; the hard bound is 5 s. A
# test waits longer than that before it gives up, and asserts the bound on what it measured.
TAKEOVER_BOUND_S = 5.0


async def ask(
    address: str, message: wire.Message, timeout: float = 1.0
) -> wire.FromScheduler | None:
    """Send ``message`` on a new connection, after a hello unless it is one; its reply (the
    second frame back when a hello went first), or None if it did not come in time."""
    link = connect(address)
    try:
        if not isinstance(message, wire.ClientHello):
            link.send(wire.encode(wire.ClientHello(wire.PROTOCOL_VERSION)))
        link.send(wire.encode(message))
        deadline = time.monotonic() + timeout
        hello_answered = isinstance(message, wire.ClientHello)
        while (left := deadline - time.monotonic()) > 0:
            try:
                frames = await asyncio.wait_for(link.recv_batch(), left)
            except TimeoutError:
                return None
            for frame in frames:
                with contextlib.suppress(TransportError):
                    reply = wire.decode_reply(frame)
                    if not hello_answered:
                        hello_answered = True  # the answer to our hello; the request's next
                        continue
                    return reply
        return None
    finally:
        await link.close()


async def hello(address: str, timeout: float = 1.0) -> wire.Welcome | wire.NotLeader | None:
    reply = await ask(address, wire.ClientHello(wire.PROTOCOL_VERSION), timeout)
    assert reply is None or isinstance(reply, wire.Welcome | wire.NotLeader), reply
    return reply


async def until_leading(
    addresses: list[str], above: int = 0, timeout: float = 30.0
) -> tuple[str, int, float]:
    """Until one of ``addresses`` welcomes a client with a term above ``above``: its
    address, its term, and the monotonic time it was first seen leading."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for address in addresses:
            reply = await hello(address, timeout=0.5)
            if isinstance(reply, wire.Welcome) and reply.term > above:
                return address, reply.term, time.monotonic()
        await asyncio.sleep(0.02)
    raise AssertionError(f"none of {addresses} led with a term above {above} in {timeout:g} s")


async def until_standby_names(address: str, leader: str, timeout: float = 15.0) -> wire.NotLeader:
    """Until the standby at ``address`` answers NotLeader naming ``leader``."""
    deadline = time.monotonic() + timeout
    reply: wire.Welcome | wire.NotLeader | None = None
    while time.monotonic() < deadline:
        reply = await hello(address, timeout=0.5)
        if isinstance(reply, wire.NotLeader) and reply.leader == leader:
            return reply
        await asyncio.sleep(0.02)
    raise AssertionError(f"{address} never named {leader} as the leader (last: {reply!r})")


async def leader_row(dsn: str) -> tuple[int, str, bool]:
    """(term, address, live) as the database's leader row has them."""
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow(
            "SELECT term, address, expires_at > clock_timestamp() FROM corral_leader"
        )
    finally:
        await conn.close()
    assert row is not None
    return row[0], row[1], row[2]


async def database_id(dsn: str) -> str:
    """The database's identity, which its schedulers name in Welcome and NotLeader."""
    conn = await asyncpg.connect(dsn)
    try:
        value: str = await conn.fetchval("SELECT value FROM corral_meta WHERE key = 'database_id'")
    finally:
        await conn.close()
    return value
