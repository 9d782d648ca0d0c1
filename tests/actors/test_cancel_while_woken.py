"""Loop tasks that are cancelled in the very turn their wait ends must still stop.

On Python 3.11, ``asyncio.wait_for`` returns the awaited result instead of raising when the
task is cancelled just as that result arrives: the cancellation is lost. A loop written
around it then goes on for good, and whoever cancelled it waits for it forever. Found by
the chaos bench (bench/leaders.py): a client that got RequestLost at a failover hung in
``close()``, its link's seek loop cancelled in the turn a Welcome woke it, in 5 of 6 tries
of a reproduction. The leader's renewal loop had the same shape: cancelled as a renewal
succeeded, it would have gone on renewing a term whose scheduler had stopped leading."""

from __future__ import annotations

import asyncio
import logging

from actors.addresses import parse
from actors.link import Link
from actors.scheduler.leadership import Leadership, Term
from tests.actors.test_leadership import Clock, Scripted
from tests.helpers.procs import free_address

# Far more loop turns than a cancelled task needs to unwind; a task that swallowed its
# cancellation is still looping (or waiting) after them.
TURNS = 50


async def turns(n: int = TURNS) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


async def test_a_links_search_cancelled_in_the_turn_it_is_woken_stops() -> None:
    hellos: list[int] = []
    link = Link(
        parse(f"{free_address()},{free_address()}"),
        lambda: hellos.append(1),
        logging.getLogger("test"),
        "client",
        None,
    )
    link.open()
    try:
        seeking = asyncio.ensure_future(link.seek())
        while not hellos:  # noqa: ASYNC110 (it said hello, and waits for an answer or a move)
            await asyncio.sleep(0)
        link._wake.set()  # a Welcome, a move: something wakes it...
        seeking.cancel()  # ...in the same turn as the owner closes
        await turns()
        assert seeking.cancelled()
    finally:
        seeking.cancel()  # (a search that lost the first one waits now: this one lands)
        await asyncio.gather(seeking, return_exceptions=True)
        await link.close()


async def test_a_leaders_renewals_cancelled_in_the_turn_one_succeeds_stop() -> None:
    clock = Clock()
    election = Scripted(clock)
    gate = asyncio.Event()
    renew = election.renew

    async def slow_renew(term: int) -> bool:
        kept = await renew(term)
        await gate.wait()  # the answer comes when the test says
        return kept

    election.renew = slow_renew  # type: ignore[method-assign]
    leadership = Leadership(election, 2.0, "tcp://me:1", clock=clock, sleep=clock.sleep)  # type: ignore[arg-type]
    holding = asyncio.ensure_future(leadership.hold(Term(1, 0.0)))
    await turns(5)  # it sleeps a quarter of the term, then renews and waits for the answer
    gate.set()  # the renewal succeeds...
    holding.cancel()  # ...in the turn the node stops holding the term
    await turns()
    try:
        assert holding.cancelled(), "it went on renewing"
    finally:
        election.then = False  # a loop that lost the cancellation ends at its next renewal
        await asyncio.gather(holding, return_exceptions=True)
