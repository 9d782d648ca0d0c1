"""Prefetch (``Worker(prefetch=P)``) against a fake scheduler: a real ZeroMQ ROUTER socket
in the test, the real worker agent in this process. A prefetching worker holds up to
concurrency + P leases and runs at most concurrency at once; a job waiting for a slot is
held (listed, renewed) but never runs once its lease lapsed or a stop came for it, and a
draining worker gives its waiting jobs back."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from actors.worker.agent import Worker
from tests.helpers.fake_scheduler import FakeScheduler, worker_on_fake
from transport import protocol as wire

started: list[int] = []
running: set[int] = set()
most_at_once = 0
release: dict[int, threading.Event] = {}
lock = threading.Lock()


def hold(job: int) -> int:
    """Run until the test releases ``job`` (in short waits: a stop lands between them)."""
    global most_at_once
    with lock:
        started.append(job)
        running.add(job)
        most_at_once = max(most_at_once, len(running))
    try:
        while not release[job].wait(0.01):
            pass
    finally:
        with lock:
            running.discard(job)
    return job


def job(job_id: int, timeout: float | None = None) -> wire.Assignment:
    release[job_id] = threading.Event()
    args = wire.pack([job_id])
    return wire.Assignment(job_id, job_id, "hold", args, wire.pack({}), 1, timeout=timeout)


@pytest.fixture(autouse=True)
def fresh() -> None:
    global most_at_once
    started.clear()
    running.clear()
    release.clear()
    most_at_once = 0


@pytest.fixture
async def fake() -> AsyncIterator[tuple[FakeScheduler, Worker]]:
    async with worker_on_fake(
        concurrency=1, prefetch=2, registry={"hold": hold}, pool="thread"
    ) as both:
        yield both
    for event in release.values():
        event.set()  # no thread left waiting


async def until(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(0.01)


async def beat_after(scheduler: FakeScheduler, seq: int) -> wire.Heartbeat:
    """The first heartbeat sent after the worker read Assign ``seq``, and after now."""
    now = time.monotonic()
    while True:
        beat = await scheduler.recv(wire.Heartbeat)
        if beat.assign_seq >= seq and beat.sent_at >= now:
            return beat  # type: ignore[no-any-return]


async def test_the_hello_announces_concurrency_plus_prefetch_and_jobs_run_one_at_a_time(
    fake: tuple[FakeScheduler, Worker],
) -> None:
    scheduler, worker = fake
    hello = await scheduler.welcome()
    assert hello.slots == 3, "1 slot + 2 prefetched: the leases the scheduler may grant"
    seq = await scheduler.assign(job(1), job(2), job(3))
    await until(lambda: started == [1])
    beat = await beat_after(scheduler, seq)
    assert sorted(beat.leases) == [(1, 1), (2, 2), (3, 3)], "waiting jobs are held: renewed"
    assert beat.waiting == [2, 3], "and named, so their timeout backstop waits for them"
    for expected in (1, 2, 3):
        await until(lambda expected=expected: started[-1:] == [expected])  # type: ignore[misc]
        release[expected].set()
        [result] = await scheduler.results(1)
        assert (result.job_id, result.ok) == (expected, True)
        await scheduler.send(wire.ResultsAck([expected], []))
    assert started == [1, 2, 3], "in the order assigned"
    assert most_at_once == 1, "never more than the worker's concurrency at once"
    assert worker.executed == 3


async def test_a_waiting_job_whose_lease_lapses_never_runs_and_gives_its_slot_back(
    fake: tuple[FakeScheduler, Worker],
) -> None:
    scheduler, worker = fake
    await scheduler.welcome(lease=0.5)  # and no heartbeat acknowledged from now on
    await scheduler.assign(job(1), job(2))
    await until(lambda: started == [1])
    results: list[wire.JobResult] = []
    credits = 0
    while worker.leases.held:  # both lapse: 1 is stopped (fenced), 2 dropped unstarted
        frame = await scheduler.recv(wire.Results)
        results += frame.results
        credits += len(frame.results) if frame.credits < 0 else frame.credits
    while credits < 2:
        frame = await scheduler.recv(wire.Results)
        results += frame.results
        credits += len(frame.results) if frame.credits < 0 else frame.credits
    assert [r.job_id for r in results] == [1], "the waiting job is never reported"
    assert "self-fenced" in (results[0].error or "")
    assert started == [1], "job 2 never ran"
    assert (worker.fenced, worker.dropped) == (1, 1)
    assert credits == 2, "both slots come back"


async def test_a_stop_for_a_waiting_job_ends_it_unrun_with_the_reason(
    fake: tuple[FakeScheduler, Worker],
) -> None:
    scheduler, _ = fake
    serving = asyncio.create_task(scheduler.serve())
    try:
        await scheduler.until(wire.WorkerHello)
        await scheduler.assign(job(1), job(2))
        await until(lambda: started == [1])
        await scheduler.send(wire.StopJob(2, 2, "cancelled"))
        [stopped] = await scheduler.until_reported(1)
        assert (stopped.job_id, stopped.ok, stopped.error) == (2, False, "cancelled")
        release[1].set()
        reported = await scheduler.until_reported(2)
        assert [(r.job_id, r.ok) for r in reported] == [(2, False), (1, True)]
        assert started == [1], "the stopped job never ran, before or after the slot freed"
    finally:
        serving.cancel()


async def test_a_draining_worker_gives_its_waiting_jobs_back_unlisted(
    fake: tuple[FakeScheduler, Worker],
) -> None:
    scheduler, worker = fake
    serving = asyncio.create_task(scheduler.serve())
    try:
        await scheduler.until(wire.WorkerHello)
        seq = await scheduler.assign(job(1), job(2), job(3))
        await until(lambda: started == [1])
        worker.stop()  # drain
        await scheduler.until(wire.Drain)
        count = scheduler.count(wire.Heartbeat)
        beat = await scheduler.until(wire.Heartbeat, count + 1)
        assert beat.assign_seq >= seq
        assert beat.leases == [(1, 1)], "jobs 2 and 3 are no longer held: re-queued"
        assert beat.waiting == []
        release[1].set()
        goodbye = await scheduler.until(wire.Goodbye)
        assert goodbye.leases == []
        assert [(r.job_id, r.ok) for r in scheduler.reported()] == [(1, True)]
        assert started == [1], "given back, never run here"
    finally:
        serving.cancel()
