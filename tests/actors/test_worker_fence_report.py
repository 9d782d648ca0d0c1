"""A self-fenced job's result leaves the worker only once its handler has stopped.

The scheduler ends the attempt, and frees its concurrency key's slot, when that result
arrives: were it sent while a thread handler still runs (a stop lands at the handler's next
bytecode, after its C call returns), another job of the key could start beside it."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest

from actors.worker.agent import Worker
from tests.helpers.fake_scheduler import FakeScheduler, worker_on_fake
from transport import protocol as wire

returned = threading.Event()


def stubborn(seconds: float) -> None:
    """One C call: the stop cannot land before it returns."""
    threading.Event().wait(seconds)
    returned.set()  # runs unless the stop landed first; either way the call has returned


def assignment(job_id: int, seconds: float) -> wire.Assignment:
    return wire.Assignment(job_id, job_id, "stubborn", wire.pack([seconds]), wire.pack({}), 1)


@pytest.fixture
async def fake() -> AsyncIterator[tuple[FakeScheduler, Worker]]:
    returned.clear()
    async with worker_on_fake(concurrency=1, registry={"stubborn": stubborn}) as both:
        yield both


async def test_a_fenced_thread_handlers_result_waits_until_the_handler_stopped(
    fake: tuple[FakeScheduler, Any],
) -> None:
    scheduler, worker = fake
    await scheduler.welcome(lease=0.3, interval=0.05)  # no heartbeat is acknowledged
    await scheduler.assign(assignment(1, 1.0))
    [fenced] = await scheduler.results(1)
    assert (fenced.error or "").startswith("self-fenced")
    assert worker.fenced == 1
    assert worker._runners._threads.busy() == 0, "the handler still ran when its result left"


async def test_a_fenced_handler_stays_listed_until_it_stopped(
    fake: tuple[FakeScheduler, Any],
) -> None:
    """While it is being stopped its lease is listed in heartbeats: the scheduler keeps the
    attempt (and its key's slot) until the result comes, or reclaims it after the grace."""
    scheduler, worker = fake
    await scheduler.welcome(lease=0.3, interval=0.05)
    await scheduler.assign(assignment(1, 1.0))

    beat: wire.Heartbeat = await scheduler.recv(wire.Heartbeat)
    while not worker.fenced:
        beat = await scheduler.recv(wire.Heartbeat)
    await scheduler.recv(wire.Heartbeat)  # one sent as it fenced, before its result
    beat = await scheduler.recv(wire.Heartbeat)
    assert not returned.is_set(), "the handler was to run for a second"
    assert beat.leases == [(1, 1)]
    await scheduler.results(1)
