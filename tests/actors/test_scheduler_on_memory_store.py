"""The scheduler's actors on the in-memory store, no file and no socket: state is set up by
committing to the store directly, then read back through the scheduler's typed reads (jobs
long finished are not in its memory) and kept across a restart on the same store."""

from __future__ import annotations

import gc
import itertools
from collections.abc import Iterable

import msgspec
import pytest

from actors.client import AsyncClient
from actors.config import SchedulerConfig
from actors.lifecycle import JobState
from actors.runtime import SLICE
from actors.scheduler.brain import Brain
from actors.scheduler.job import Job
from actors.scheduler.jobs import JobTable
from actors.scheduler.ops import Ops
from actors.scheduler.store.memory import MemoryStore
from tests.helpers.job_rows import stored_job
from tests.helpers.turns import Turns

_n = itertools.count()


async def filled_store() -> MemoryStore:
    store = MemoryStore()
    await store.open()
    ops = Ops(
        inserts=[
            stored_job(1, JobState.SUCCEEDED, result=msgspec.Raw(b"\x01"), attempts=1, token=1),
            stored_job(2, JobState.FAILED, error="boom", attempts=1, token=1),
            stored_job(3, JobState.FAILED, error="bang", attempts=1, token=1),
            stored_job(4, JobState.CANCELLED),
        ],
        attempts=[(2, 1, "w", 1.0, 2.0, "failed", "boom"), (3, 1, "w", 1.0, 2.0, "failed", "bang")],
    )
    await store.commit(ops)
    await store.close()
    return store


async def test_finished_jobs_are_read_from_the_store_and_requeued_through_it() -> None:
    store = await filled_store()
    config = SchedulerConfig(bind=f"mem://memory-store-{next(_n)}", db="unused.db")
    async with Brain(config, store) as brain, AsyncClient(brain.address) as client:
        assert brain.table.jobs == {}, "nothing live: every read below goes to the store"
        view = await client.job(2)
        assert view is not None
        assert view.status == "FAILED"
        assert [(a.token, a.outcome, a.error) for a in view.history] == [(1, "failed", "boom")]
        assert [v.job_id for v in await client.jobs(status="FAILED")] == [3, 2], "newest first"
        assert [v.job_id for v in await client.jobs(limit=2)] == [4, 3]
        reply = await client.requeue(all_failed=True)
        assert reply.job_ids == [2, 3]
        requeued = await client.job(3)
        assert requeued is not None
        assert requeued.status == "QUEUED"
    assert store.rows[3].status is JobState.QUEUED, "the requeue was committed"
    config = SchedulerConfig(bind=f"mem://memory-store-{next(_n)}", db="unused.db")
    async with Brain(config, store) as brain, AsyncClient(brain.address) as client:
        assert brain.recovered["QUEUED"] == 2, "a restart on the same store finds them"
        assert (await client.status()).jobs["FAILED"] == 0


async def test_a_start_admits_its_live_jobs_a_slice_at_a_time_with_the_gc_paused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A new leader loads its whole backlog on the loop that renews its term: the jobs are
    admitted a slice at a time, other tasks running in between, and the cyclic GC is off
    meanwhile (its full collections grow with the heap: 0.5 to 0.9 s each at 400,000
    jobs), then on again."""
    store = MemoryStore()
    await store.open()
    n = 2 * SLICE + 1
    await store.commit(Ops(inserts=[stored_job(i, JobState.QUEUED) for i in range(1, n + 1)]))
    await store.close()
    seen: list[tuple[int, bool, int]] = []
    admit = JobTable.admit
    config = SchedulerConfig(bind=f"mem://memory-store-{next(_n)}", db="unused.db")
    async with Turns() as turns:

        def spy(table: JobTable, live: Iterable[Job]) -> None:
            live = list(live)
            if live:  # (load's totals come with none)
                seen.append((turns.count, gc.isenabled(), len(live)))
            admit(table, live)

        monkeypatch.setattr(JobTable, "admit", spy)
        assert gc.isenabled()
        async with Brain(config, store) as brain:
            assert gc.isenabled(), "on again once started"
            assert len(brain.table.jobs) == n
    assert [size for _, _, size in seen] == [SLICE, SLICE, 1]
    assert [enabled for _, enabled, _ in seen] == [False] * 3
    assert len({count for count, _, _ in seen}) == 3, "the other task ran between slices"
