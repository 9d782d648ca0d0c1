"""A leader on a real PostgreSQL whose serving event loop is held (one long step of
CPU-bound Python, as a new leader loading a large backlog on a loaded machine takes):
its term is renewed meanwhile on the election's own thread (``election_thread``), and it
keeps the term. A loop held past ``leadership.stall_limit`` resigns the term instead.
(Before, the renewals ran on the serving loop: held past the term, it lost the term it had
just loaded, as tests/e2e/test_takeover_backlog.py found in CI.) And a leader cut off from
the database stops promptly when asked."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import asyncpg
import pytest

from actors.config import LEASE_S, SUSPECT_AFTER_S, SchedulerConfig
from actors.scheduler import leadership
from actors.scheduler.node import Node
from tests.helpers.tcp_proxy import TcpProxy
from tests.helpers.waiting import until

TTL = 1.0
ROW = "SELECT term, expires_at, expires_at > clock_timestamp() FROM corral_leader WHERE id = 1"


@dataclass
class Running:
    node: Node
    lines: list[str] = field(default_factory=list)
    leading: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None  # node.run()


Lead = Callable[..., Awaitable[Running]]


@pytest.fixture
async def lead(postgres_dsn: str) -> AsyncIterator[Lead]:
    """``await lead(lease=..., suspect_after=..., db=...)``: a scheduler leading term 1 in
    this process, with a ``--leader-ttl`` of 1 s, that ``--lease`` and ``--suspect-after``
    (the defaults without them), on ``db`` (the test's database without it)."""
    started: list[Running] = []

    async def start(
        lease: float = LEASE_S, suspect_after: float = SUSPECT_AFTER_S, db: str = ""
    ) -> Running:
        config = SchedulerConfig(
            bind="mem://held",
            db=db or postgres_dsn,
            leader_ttl=TTL,
            lease=lease,
            suspect_after=suspect_after,
        )
        running = Running(Node(config))

        def say(line: str) -> None:
            running.lines.append(line)
            if "; leader, term 1;" in line:
                running.leading.set()

        running.node.say = say
        running.task = asyncio.create_task(running.node.run())
        started.append(running)
        await asyncio.wait_for(running.leading.wait(), 30)
        return running

    yield start
    for running in started:
        running.node.stop()
        assert running.task is not None
        await asyncio.wait_for(running.task, 30)


def hold_the_loop(seconds: float) -> None:
    """Busy Python on the serving loop's thread: the GIL is handed over as usual, but no
    step of that loop runs."""
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        pass


async def test_a_leader_whose_serving_loop_is_held_past_its_term_keeps_the_term(
    lead: Lead, postgres_dsn: str
) -> None:
    leader = await lead(
        lease=10.0, suspect_after=3.0
    )  # held for 3 s, under its stall limit of 8.75 s
    assert leadership.stall_limit(10.0, TTL) > 3 * TTL
    conn = await asyncpg.connect(postgres_dsn)
    try:
        hold_the_loop(3 * TTL)
        term, expires_at, live = await conn.fetchrow(ROW)
        assert (term, live) == (1, True), "the term was not renewed while the loop was held"

        async def renewed_since() -> bool:
            return bool((await conn.fetchrow(ROW))[1] > expires_at)

        await until(renewed_since)  # the renewals go on once the loop runs again
        assert not any("stepped down" in line for line in leader.lines), leader.lines
        assert leader.node.brain is not None
        assert leader.node.brain.term == 1
    finally:
        await conn.close()


async def test_a_leader_whose_serving_loop_stays_held_resigns_its_term(lead: Lead) -> None:
    leader = await lead(lease=2.0, suspect_after=1.5)  # its stall limit is the TTL, 1 s
    assert leadership.stall_limit(2.0, TTL) == TTL
    hold_the_loop(3 * TTL)

    async def stepped_down() -> bool:
        return any("stepped down from term 1" in line for line in leader.lines)

    await until(stepped_down)
    line = next(line for line in leader.lines if "stepped down from term 1" in line)
    assert "event loop has not run for" in line
    assert "term 1 resigned to a standby" in line


async def test_a_leader_cut_off_from_the_database_stops_promptly_when_asked(
    lead: Lead, postgres_dsn: str
) -> None:
    """SIGTERM to a leader whose database went silent: leaving (resigning the term, removing
    its presence row) is best effort and bounded, not a wait for the connection's
    timeouts."""
    with TcpProxy.to_dsn(postgres_dsn) as proxy:
        leader = await lead(db=proxy.dsn(postgres_dsn))
        proxy.blackhole()
        leader.node.stop()
        # A TTL to resign the term (Node._lead), one to leave, up to a second each to close
        # the brain's store and the election: not the 10 s of a reconnection's timeout
        # (11 s before leaving was bounded).
        assert leader.task is not None
        await asyncio.wait_for(leader.task, 3 * TTL + 4)
