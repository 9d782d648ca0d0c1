"""The election's own thread (``actors.scheduler.election_thread``): what ``run`` returns
and raises, that cancelling the caller cancels the coroutine on the thread, that
``close`` ends what still runs there, and how long the serving loop went without
running (``serving_idle``). A real leader on PostgreSQL whose serving loop is held:
tests/store/test_held_serving_loop.py."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator

import pytest

from actors.scheduler.election_thread import TICK_S, ElectionThread
from tests.helpers.waiting import until


@pytest.fixture
async def elections() -> AsyncIterator[ElectionThread]:
    thread = ElectionThread()
    thread.start()
    try:
        yield thread
    finally:
        await thread.close()


async def test_a_coroutine_runs_on_the_election_thread_and_its_result_comes_back(
    elections: ElectionThread,
) -> None:
    async def where() -> int:
        await asyncio.sleep(0)
        return threading.get_ident()

    assert await elections.run(where()) != threading.get_ident()


async def test_what_the_coroutine_raises_the_caller_gets(elections: ElectionThread) -> None:
    async def fail() -> None:
        raise LookupError("no such term")

    with pytest.raises(LookupError, match="no such term"):
        await elections.run(fail())


async def test_cancelling_the_caller_cancels_the_coroutine_on_the_election_thread(
    elections: ElectionThread,
) -> None:
    """A leader's ``hold`` is cancelled this way when its term ends for another reason;
    left running there, it would renew a term nobody serves, forever."""
    started, cancelled = threading.Event(), threading.Event()

    async def renew_forever() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    caller = asyncio.ensure_future(elections.run(renew_forever()))
    assert await asyncio.to_thread(started.wait, 10)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert await asyncio.to_thread(cancelled.wait, 10), "still running on the thread"


async def test_close_ends_what_still_runs_on_the_thread_and_joins_it() -> None:
    before = set(threading.enumerate())
    thread = ElectionThread()
    thread.start()
    [started_thread] = set(threading.enumerate()) - before
    started, ended = threading.Event(), threading.Event()

    async def forever() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        finally:
            ended.set()

    caller = asyncio.ensure_future(thread.run(forever()))
    assert await asyncio.to_thread(started.wait, 10)
    await thread.close()
    assert ended.is_set()
    assert started_thread.name == "corral-election"
    assert not started_thread.is_alive()
    with pytest.raises(asyncio.CancelledError):
        await caller
    with pytest.raises(RuntimeError, match="not running"):
        await thread.run(forever())


async def test_serving_idle_counts_the_time_the_serving_loop_did_not_run(
    elections: ElectionThread,
) -> None:
    await asyncio.sleep(TICK_S * 2)  # a tick has run
    assert elections.serving_idle() < 1.0
    held_until = time.monotonic() + 0.6
    while time.monotonic() < held_until:  # the serving loop held: no tick runs
        pass
    assert elections.serving_idle() >= 0.6 - TICK_S

    async def ticked_again() -> bool:
        return elections.serving_idle() < 0.6 - TICK_S

    await until(ticked_again)
