"""The worker's batched hot path (issue 19): results of one loop turn leave in one frame,
flushed with no further event and split by size; the callbacks that replaced the task per
job still report a stopped handler only once it has stopped; an acknowledgement that
refuses a stale-token result among accepted ones drops each from the outbox."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from actors.worker.agent import Worker
from actors.worker.outbox import Outbox
from actors.worker.results import MAX_RESULTS_PER_FRAME
from tests.helpers.fake_scheduler import FakeScheduler, worker_on_fake
from transport import protocol as wire

stopped_at: list[float] = []


async def quick() -> int:
    return 1


async def stubborn() -> None:
    """Takes 0.3 s to stop once cancelled (cleanup that awaits)."""
    try:
        await asyncio.sleep(10)
    finally:
        await asyncio.sleep(0.3)
        stopped_at.append(time.monotonic())


TASKS = {"quick": quick, "stubborn": stubborn}


def job(job_id: int, task_name: str, token: int | None = None) -> wire.Assignment:
    return wire.Assignment(job_id, token or job_id, task_name, wire.pack([]), wire.pack({}), 1)


@pytest.fixture
async def fake() -> AsyncIterator[tuple[FakeScheduler, Worker]]:
    stopped_at.clear()
    async with worker_on_fake(concurrency=8, registry=TASKS, pool="thread") as both:
        yield both


def result(job_id: int) -> wire.JobResult:
    return wire.JobResult(job_id, job_id, True, wire.pack(None))


async def test_results_of_one_turn_are_flushed_when_idle_and_split_by_size() -> None:
    sent: list[wire.Message] = []
    outbox = Outbox(sent.append)
    total = MAX_RESULTS_PER_FRAME + 5
    for job_id in range(1, total + 1):
        outbox.report(result(job_id), True)
    assert sent == [], "nothing leaves while the turn still reports"
    await asyncio.sleep(0)  # the loop turns over with nothing else happening: flushed
    await asyncio.sleep(0)
    assert [len(m.results) for m in sent if isinstance(m, wire.Results)] == [
        MAX_RESULTS_PER_FRAME,
        5,
    ]
    assert all(m.credits == -1 for m in sent if isinstance(m, wire.Results))
    assert len(outbox.unacked) == total  # kept until acknowledged


async def test_the_jobs_of_one_assign_frame_report_in_one_results_frame(
    fake: tuple[FakeScheduler, Worker],
) -> None:
    scheduler, worker = fake
    await scheduler.welcome()
    await scheduler.assign(*(job(i, "quick") for i in range(1, 9)))
    frame: wire.Results = await scheduler.recv(wire.Results)
    assert sorted(r.job_id for r in frame.results) == list(range(1, 9))
    assert frame.credits == -1  # every slot freed with its result
    assert all(r.ok and wire.unpack(r.result) == 1 for r in frame.results)
    assert worker.running == {}


async def test_a_fenced_async_handler_is_reported_only_after_it_stopped(
    fake: tuple[FakeScheduler, Worker],
) -> None:
    scheduler, worker = fake
    await scheduler.welcome(lease=0.3, interval=0.05)  # no heartbeat is acknowledged
    await scheduler.assign(job(1, "stubborn"))
    [fenced] = await scheduler.results(1)
    received = time.monotonic()
    assert (fenced.error or "").startswith("self-fenced")
    assert stopped_at, "the result left before the handler had stopped"
    assert stopped_at[0] <= received
    assert worker.fenced == 1


async def test_an_ack_refusing_a_stale_token_among_accepted_results_drops_each(
    fake: tuple[FakeScheduler, Worker], caplog: Any
) -> None:
    scheduler, worker = fake
    await scheduler.welcome()
    await scheduler.assign(job(1, "quick"), job(2, "quick", token=7), job(3, "quick"))
    frame: wire.Results = await scheduler.recv(wire.Results)
    assert {(r.job_id, r.token) for r in frame.results} == {(1, 1), (2, 7), (3, 3)}
    with caplog.at_level(logging.WARNING, logger="corral.worker"):
        await scheduler.send(wire.ResultsAck([1, 3], [2]))
        for _ in range(100):
            if not worker.outbox.unacked:
                break
            await asyncio.sleep(0.01)
    assert worker.outbox.unacked == {}
    assert "refused our result for job 2" in caplog.text
    assert worker.leases.held == {}
