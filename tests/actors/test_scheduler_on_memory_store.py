"""The scheduler's actors on the in-memory store, no file and no socket: state is set up by
committing to the store directly, then read back through the scheduler's typed reads (jobs
long finished are not in its memory) and kept across a restart on the same store."""

from __future__ import annotations

import itertools
from typing import Any

import msgspec

from actors.client import AsyncClient
from actors.config import SchedulerConfig
from actors.lifecycle import JobState
from actors.scheduler.brain import Brain
from actors.scheduler.job import Job
from actors.scheduler.ops import Ops
from actors.scheduler.store.memory import MemoryStore

_n = itertools.count()


def stored_job(job_id: int, status: JobState, **fields: Any) -> Job:
    raw = msgspec.Raw(b"\x90")
    return Job(
        job_id, "t", raw, msgspec.Raw(b"\x80"), 0, "q", (), 0, None, None, 1.0, status, **fields
    )


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
