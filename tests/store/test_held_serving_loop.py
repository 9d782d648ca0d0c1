"""A leader on a real PostgreSQL whose serving event loop is held (one long step of
CPU-bound Python, as a new leader loading a large backlog on a loaded machine takes):
its term is renewed meanwhile on the election's own thread (``election_thread``), and it
keeps the term. A loop held past ``SERVING_STALL_S`` gives the term up instead. (Before,
the renewals ran on the serving loop: held past the term, it lost the term it had
just loaded, as tests/e2e/test_takeover_backlog.py found in CI.)"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import asyncpg
import pytest

from actors.config import SchedulerConfig
from actors.scheduler import leadership
from actors.scheduler.node import Node
from tests.helpers.waiting import until

TTL = 1.0
ROW = "SELECT term, expires_at, expires_at > clock_timestamp() FROM corral_leader WHERE id = 1"


@dataclass
class Running:
    node: Node
    lines: list[str] = field(default_factory=list)
    leading: asyncio.Event = field(default_factory=asyncio.Event)


@pytest.fixture
async def leader(postgres_dsn: str) -> AsyncIterator[Running]:
    """A scheduler leading term 1 (``--leader-ttl`` of 1 s), in this process."""
    running = Running(Node(SchedulerConfig(bind="mem://held", db=postgres_dsn, leader_ttl=TTL)))

    def say(line: str) -> None:
        running.lines.append(line)
        if "; leader, term 1;" in line:
            running.leading.set()

    running.node.say = say
    task = asyncio.create_task(running.node.run())
    try:
        await asyncio.wait_for(running.leading.wait(), 30)
        yield running
    finally:
        running.node.stop()
        await asyncio.wait_for(task, 30)


def hold_the_loop(seconds: float) -> None:
    """Busy Python on the serving loop's thread: the GIL is handed over as usual, but no
    step of that loop runs."""
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        pass


async def test_a_leader_whose_serving_loop_is_held_past_its_term_keeps_the_term(
    leader: Running, postgres_dsn: str
) -> None:
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


async def test_a_leader_whose_serving_loop_stays_held_gives_up_its_term(
    leader: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(leadership, "SERVING_STALL_S", 2 * TTL)
    hold_the_loop(3 * TTL)

    async def stepped_down() -> bool:
        return any("stepped down from term 1" in line for line in leader.lines)

    await until(stepped_down)
    [line] = [line for line in leader.lines if "stepped down" in line]
    assert "event loop has not run for" in line
