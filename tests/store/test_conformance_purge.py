"""Retention, on every backend: what ``StoreBackend.purge`` deletes (finished jobs past
their period, with their attempts, edges, keys and emptied workflows) and what it must
keep (live jobs, recent ones, parents of jobs that may run again, the newest ids)."""

from __future__ import annotations

from actors.lifecycle import JobState
from actors.scheduler.store.base import StoreBackend
from tests.store.conftest import StoreFactory
from tests.store.records import C, F, P, Q, R, S, U, attempt, commit, job

DAY = 86_400.0
NOW = 100 * DAY
DONE_BEFORE = NOW - 7 * DAY
FAILED_BEFORE = NOW - 30 * DAY


def old(job_id: int, status: JobState, age_days: float, **fields: object) -> object:
    """A job that finished ``age_days`` before NOW."""
    return job(job_id, status, finished_at=NOW - age_days * DAY, **fields)  # type: ignore[arg-type]


async def ids(store: StoreBackend) -> list[int]:
    return sorted(j.id for j in await store.list_jobs(limit=100_000))


async def purge_all(store: StoreBackend) -> list[int]:
    gone: list[int] = []
    while batch := (await store.purge(DONE_BEFORE, FAILED_BEFORE, 2)).jobs:
        gone += [job_id for job_id, _status, _key in batch]
    return sorted(gone)


async def purged_ids(store: StoreBackend) -> list[int]:
    return sorted(j[0] for j in (await store.purge(DONE_BEFORE, FAILED_BEFORE, 100)).jobs)


async def test_finished_jobs_go_after_their_period_and_failed_ones_after_the_longer_one(
    store_factory: StoreFactory,
) -> None:
    store = await store_factory.open()
    jobs = [
        old(1, S, 8),  # gone
        old(2, C, 8),  # gone
        old(3, JobState.UPSTREAM_FAILED, 8),  # gone
        old(4, F, 8),  # kept: FAILED has 30 days
        old(5, F, 31),  # gone
        old(6, S, 6),  # kept: within its 7 days
        job(7, Q),
        job(8, R, started_at=NOW - 40 * DAY),
        job(9, P, finished_at=NOW - 40 * DAY),  # waiting for a retry: live
        job(10, Q),  # the newest
    ]
    await commit(store, inserts=jobs, attempts=[attempt(1, 1), attempt(5, 1), attempt(4, 1)])
    purged = await store.purge(DONE_BEFORE, FAILED_BEFORE, 100)
    assert sorted(purged.jobs) == [
        (1, "SUCCEEDED", None),
        (2, "CANCELLED", None),
        (3, "UPSTREAM_FAILED", None),
        (5, "FAILED", None),
    ]
    for _ in range(2):  # as purged, then after a restart
        assert await ids(store) == [4, 6, 7, 8, 9, 10]
        assert await store.attempts(1) == []
        assert await store.attempts(5) == []
        assert len(await store.attempts(4)) == 1
        assert (await store.recover()).counts == {
            "FAILED": 1,
            "SUCCEEDED": 1,
            "QUEUED": 2,
            "RUNNING": 1,
            "PENDING": 1,
        }
        store = await store_factory.restart(store)
    assert (await store.purge(DONE_BEFORE, FAILED_BEFORE, 100)).jobs == []


async def test_a_purge_deletes_at_most_its_limit_oldest_first_within_a_status(
    store_factory: StoreFactory,
) -> None:
    store = await store_factory.open()
    await commit(store, inserts=[old(i, S, 20 - i) for i in range(1, 8)] + [job(8)])
    first = await store.purge(DONE_BEFORE, FAILED_BEFORE, 3)
    assert [j[0] for j in first.jobs] == [1, 2, 3]
    assert await purge_all(store) == [4, 5, 6, 7]
    assert await ids(store) == [8]


async def test_zero_means_keep_that_kind_forever(store_factory: StoreFactory) -> None:
    store = await store_factory.open()
    await commit(store, inserts=[old(1, S, 90), old(2, F, 90), job(3)])
    assert [j[0] for j in (await store.purge(0, FAILED_BEFORE, 10)).jobs] == [2]
    assert [j[0] for j in (await store.purge(DONE_BEFORE, 0, 10)).jobs] == [1]


async def test_the_newest_job_is_kept_so_its_id_is_never_given_again(
    store_factory: StoreFactory,
) -> None:
    store = await store_factory.open()
    await commit(store, inserts=[old(1, S, 9), old(2, S, 9)])
    assert await purge_all(store) == [1]
    store = await store_factory.restart(store)
    assert (await store.recover()).max_job_id == 2


async def test_parents_of_jobs_that_may_run_again_are_kept(store_factory: StoreFactory) -> None:
    store = await store_factory.open()
    parents = [old(i, S, 9) for i in range(1, 7)]
    children = [
        job(11, P, depends_on=(1,)),  # live: needs 1's result
        old(12, F, 9, depends_on=(2,)),  # a re-queue runs it with 2's result
        old(13, U, 9, depends_on=(3, 6)),  # a re-queued ancestor revives it
        old(14, S, 1, depends_on=(4,)),  # done: keeps nothing
        old(15, C, 1, depends_on=(5,)),  # cancelled: keeps nothing
    ]
    edges = [(p, c.id) for c in children for p in c.depends_on]
    await commit(store, inserts=[*parents, *children, job(20)], edges=edges)
    assert await purged_ids(store) == [4, 5, 13]
    # 13 went (its own 7 days passed): its parents 3 and 6 keep nothing now.
    assert await purged_ids(store) == [3, 6]
    assert await purged_ids(store) == []
    assert await ids(store) == [1, 2, 11, 12, 14, 15, 20]
    assert await store.children([1, 2, 3, 6]) == [11, 12]


async def test_edges_of_a_purged_job_go_both_ways(store_factory: StoreFactory) -> None:
    store = await store_factory.open()
    jobs = [old(1, S, 9), old(2, S, 9, depends_on=(1,)), old(3, S, 2, depends_on=(2,)), job(4)]
    await commit(store, inserts=jobs, edges=[(1, 2), (2, 3)])
    assert await purge_all(store) == [1, 2]
    assert await store.children([1, 2]) == []


async def test_an_idempotency_key_is_free_again_once_its_job_is_purged(
    store_factory: StoreFactory,
) -> None:
    store = await store_factory.open()
    await commit(store, inserts=[old(1, S, 9, key="k"), job(2)])
    purged = await store.purge(DONE_BEFORE, FAILED_BEFORE, 10)
    assert purged.jobs == [(1, "SUCCEEDED", "k")]
    assert await store.ids_by_key(["k"]) == {}
    await commit(store, inserts=[job(3, key="k")])  # no clash
    assert await store.ids_by_key(["k"]) == {"k": 3}


async def test_a_workflow_goes_with_its_last_step_and_the_newest_one_stays(
    store_factory: StoreFactory,
) -> None:
    store = await store_factory.open()
    flows = [(1, "a", "wf-a", 1.0), (2, "b", None, 1.0), (3, "c", None, 1.0)]
    steps = [
        old(1, S, 9, workflow_id=1, step="x"),
        old(2, S, 9, workflow_id=1, step="y"),
        old(3, S, 9, workflow_id=2, step="x"),
        old(4, S, 2, workflow_id=2, step="y"),  # recent: workflow 2 stays
        old(5, S, 9, workflow_id=3, step="x"),  # workflow 3 is the newest: stays
        job(6),
    ]
    await commit(store, workflows=flows, inserts=steps)
    purged = await store.purge(DONE_BEFORE, FAILED_BEFORE, 100)
    assert sorted(j[0] for j in purged.jobs) == [1, 2, 3, 5]
    assert purged.workflows == 1
    assert await store.workflow(1) is None
    assert await store.workflow_by_key("wf-a") is None
    assert await store.workflow(2) is not None
    assert await store.workflow(3) is not None
    assert [j.id for j in await store.workflow_jobs(2)] == [4]
