"""What every store backend must answer: the start-up read (``recover``), lookups by ids
and keys, listings with their order, filters, paging and limits, all the same after a
restart, and for id lists far longer than one SQL statement takes. Run against every
backend in conftest.py, through the store interface only."""

from __future__ import annotations

import random

import msgspec
import pytest

from actors.lifecycle import JobState
from actors.scheduler.job import Job
from actors.scheduler.store.base import Recovered, StoreBackend
from tests.store.conftest import StoreFactory
from tests.store.records import (
    C,
    F,
    P,
    Q,
    R,
    S,
    U,
    as_read,
    attempt,
    commit,
    full_job,
    job,
    snapshot,
)


async def test_an_empty_store_answers_every_read_with_nothing(store_factory: StoreFactory) -> None:
    store = await store_factory.open()
    database_id = (await store.recover()).database_id
    for _ in range(2):
        assert await store.recover() == Recovered([], {}, 0, 0, None, [], database_id)
        assert await store.jobs([1, 2]) == []
        assert await store.jobs([]) == []
        assert await store.ids_by_key(["k"]) == {}
        assert await store.list_jobs() == []
        assert await store.job_ids(Q) == []
        assert await store.attempts(1) == []
        assert await store.workflow(1) is None
        assert await store.workflow_by_key("flow-1") is None
        assert await store.workflow_jobs(1) == []
        assert await store.children([1]) == []
        store = await store_factory.restart(store)


def _family() -> list[Job]:
    """Jobs in every state; the live ones depend on settled, live and missing parents."""
    return [
        job(7, R, depends_on=(1,), created_at=7.0, token=1, worker="w", started_at=20.0),
        job(1, S, created_at=1.0, finished_at=30.0),
        job(2, F, created_at=2.0, finished_at=25.0, error="boom"),
        job(3, C, created_at=3.0),
        job(4, U, created_at=4.0),
        job(5, P, depends_on=(1, 2, 6, 99), created_at=5.0),  # 6 is live, 99 never stored
        job(6, Q, depends_on=(3,), created_at=6.0),
        job(8, S, depends_on=(4,), created_at=8.0, finished_at=12.0),  # 4 is not loaded
    ]


async def test_recover_loads_live_jobs_counts_maxima_and_the_settled_parents_of_live_jobs(
    store_factory: StoreFactory,
) -> None:
    store = await store_factory.open()
    family = {j.id: j for j in _family()}
    await commit(
        store,
        inserts=list(family.values()),
        workflows=[(3, "w3", None, 1.0), (1, "w1", "flow-1", 1.0)],
    )
    for _ in range(2):
        got = await store.recover()
        assert got.live == [as_read(family[i]) for i in (5, 6, 7)], "live jobs only, by id"
        assert got.counts == {
            "SUCCEEDED": 2,
            "FAILED": 1,
            "CANCELLED": 1,
            "UPSTREAM_FAILED": 1,
            "PENDING": 1,
            "QUEUED": 1,
            "RUNNING": 1,
        }
        assert (got.max_job_id, got.max_workflow_id) == (8, 3)
        assert got.last_write == 30.0
        assert got.parents == [as_read(family[i]) for i in (1, 2, 3)], "settled ones, by id"
        store = await store_factory.restart(store)


@pytest.mark.parametrize("newest", ["created_at", "started_at", "finished_at"])
async def test_the_last_write_is_the_newest_time_any_job_records(
    store: StoreBackend, newest: str
) -> None:
    times = {"created_at": 100.0, "started_at": 200.0, "finished_at": 300.0}
    times[newest] = 1000.5
    first = job(1, S, created_at=times["created_at"])
    first.started_at, first.finished_at = times["started_at"], times["finished_at"]
    await commit(
        store,
        inserts=[
            first,
            job(2, Q, created_at=150.0),  # never started: its other times are None
            job(3, F, created_at=50.0, started_at=60.0, finished_at=70.0),
        ],
    )
    assert (await store.recover()).last_write == 1000.5


async def test_jobs_returns_the_known_ids_once_each_whatever_the_request(
    store: StoreBackend,
) -> None:
    await commit(store, inserts=[job(i) for i in (1, 2, 3, 10)])
    found = await store.jobs([3, 1, 3, 42, 1, 10, 0, -1])
    assert sorted(j.id for j in found) == [1, 3, 10]
    assert await store.jobs(range(4, 10)) == []


async def test_ids_by_key_names_only_the_keys_that_exist(store: StoreBackend) -> None:
    await commit(store, inserts=[job(1, key="a"), job(2), job(3, S, key="c"), job(4, key="")])
    assert await store.ids_by_key(["a", "b", "c", "a"]) == {"a": 1, "c": 3}
    assert await store.ids_by_key([""]) == {"": 4}, "an empty key is a key"
    assert await store.ids_by_key([]) == {}


_STATUSES = [Q, R, S, F]
_QUEUES = ["a", "b", "c"]


async def _listing_store(store_factory: StoreFactory) -> StoreBackend:
    """60 jobs over four statuses and three queues, committed out of order in batches."""
    store = await store_factory.open()
    ids = list(range(1, 61))
    random.Random(14).shuffle(ids)
    for start in range(0, 60, 17):
        batch = ids[start : start + 17]
        await commit(store, inserts=[job(i, _STATUSES[i % 4], queue=_QUEUES[i % 3]) for i in batch])
    return store


def _expected(status: JobState | None, queue: str | None) -> list[int]:
    return [
        i
        for i in range(60, 0, -1)
        if (status is None or _STATUSES[i % 4] == status)
        and (queue is None or _QUEUES[i % 3] == queue)
    ]


async def test_list_jobs_is_newest_first_filtered_by_status_and_queue_together(
    store_factory: StoreFactory,
) -> None:
    store = await _listing_store(store_factory)
    for _ in range(2):
        for status in [None, *_STATUSES, C]:
            for queue in [None, "a", "b", "nowhere"]:
                got = await store.list_jobs(status=status, queue=queue, limit=1000)
                assert [j.id for j in got] == _expected(status, queue), (status, queue)
                assert all(isinstance(j, Job) for j in got)
        store = await store_factory.restart(store)


@pytest.mark.parametrize(("status", "queue"), [(None, None), (S, None), (None, "b"), (R, "c")])
async def test_list_jobs_pages_through_everything_without_gaps_or_repeats(
    store_factory: StoreFactory, status: JobState | None, queue: str | None
) -> None:
    store = await _listing_store(store_factory)
    expected = _expected(status, queue)
    seen: list[int] = []
    before: int | None = None
    for _ in range(100):
        page = [
            j.id for j in await store.list_jobs(status=status, queue=queue, before=before, limit=4)
        ]
        assert len(page) <= 4
        seen += page
        if len(page) < 4:
            break
        before = page[-1]
    assert seen == expected


async def test_list_jobs_keeps_to_its_limit_and_to_before(store_factory: StoreFactory) -> None:
    store = await _listing_store(store_factory)
    assert [j.id for j in await store.list_jobs(limit=5)] == [60, 59, 58, 57, 56]
    assert [j.id for j in await store.list_jobs()] == list(range(60, 0, -1)), "100 by default"
    assert [j.id for j in await store.list_jobs(limit=1)] == [60]
    assert await store.list_jobs(limit=0) == []
    assert [j.id for j in await store.list_jobs(before=4)] == [3, 2, 1]
    assert [j.id for j in await store.list_jobs(before=61, limit=2)] == [60, 59]
    assert await store.list_jobs(before=1) == []
    assert [j.id for j in await store.list_jobs(status=S, before=30, limit=3)] == [26, 22, 18]


async def test_ended_by_minute_counts_finished_jobs_per_minute_and_status_since_a_time(
    store_factory: StoreFactory,
) -> None:
    store = await store_factory.open()
    await commit(
        store,
        inserts=[
            job(1, S, finished_at=600.0),  # minute 10
            job(2, S, finished_at=659.9),  # minute 10
            job(3, F, finished_at=630.0, error="boom"),  # minute 10
            job(4, S, finished_at=720.0),  # minute 12
            job(5, C, finished_at=725.0),  # minute 12
            job(6, S, finished_at=599.0),  # before since
            job(7, R, token=1, worker="w", started_at=700.0),  # not ended
            job(8, P),
        ],
    )
    for _ in range(2):
        assert await store.ended_by_minute(600.0) == [
            (10, "FAILED", 1),
            (10, "SUCCEEDED", 2),
            (12, "CANCELLED", 1),
            (12, "SUCCEEDED", 1),
        ]
        assert await store.ended_by_minute(10_000.0) == []
        store = await store_factory.restart(store)


async def test_job_ids_of_a_status_are_ascending(store_factory: StoreFactory) -> None:
    store = await _listing_store(store_factory)
    for status in _STATUSES:
        assert await store.job_ids(status) == sorted(_expected(status, None))
    assert await store.job_ids(C) == []


async def test_every_read_answers_the_same_after_a_restart(store_factory: StoreFactory) -> None:
    store = await store_factory.open()
    await commit(
        store,
        workflows=[(42, "full", "flow-42", 1.0), (7, "other", None, 2.0)],
        inserts=[*_family(), full_job(20), full_job(21), job(22, Q, workflow_id=7, key="k22")],
        edges=[(1, 7), (1, 5), (2, 5), (6, 5), (20, 22)],
        attempts=[attempt(2, 1), attempt(2, 2), attempt(7, 1), attempt(20, 3)],
    )
    seen = (range(0, 30), ["key-20", "key-21", "k22", "nope"], [7, 42, 43])
    before = await snapshot(store, *seen)
    assert before["jobs"], "the snapshot holds something to compare"
    assert before["attempts"][2]
    assert before["children"][1]
    store = await store_factory.restart(store)
    assert await snapshot(store, *seen) == before
    store = await store_factory.restart(store)
    assert await snapshot(store, *seen) == before


LARGE = 5_000  # far above the 900 ids SQLite's store puts in one statement


async def test_reads_by_thousands_of_ids_find_every_one(store_factory: StoreFactory) -> None:
    store = await store_factory.open()
    await commit(
        store,
        inserts=[job(i, S, key=f"k{i}") for i in range(1, LARGE + 1)],
        edges=[(i, i + 1) for i in range(1, LARGE)],
    )
    for _ in range(2):
        found = await store.jobs([*range(1, LARGE + 1), *range(LARGE + 1, LARGE + 500)])
        assert sorted(j.id for j in found) == list(range(1, LARGE + 1))
        keys = [f"k{i}" for i in range(1, LARGE + 500)]
        assert await store.ids_by_key(keys) == {f"k{i}": i for i in range(1, LARGE + 1)}
        assert await store.children(range(1, LARGE + 1)) == list(range(2, LARGE + 1))
        assert len(await store.job_ids(S)) == LARGE
        store = await store_factory.restart(store)


async def test_a_database_keeps_its_identity_and_another_one_has_its_own(
    store_factory: StoreFactory,
) -> None:
    """Job ids and fencing tokens mean something only within one database: the id that
    workers and clients check is made once per database and survives restarts."""
    store = await store_factory.open()
    database_id = (await store.recover()).database_id
    assert len(database_id) == 32, database_id
    assert int(database_id, 16) >= 0, "hexadecimal"
    store = await store_factory.restart(store)
    assert (await store.recover()).database_id == database_id
    other = await store_factory.open()
    assert (await other.recover()).database_id not in ("", database_id)


async def test_list_jobs_by_owner_shows_only_that_submitters_jobs(
    store_factory: StoreFactory,
) -> None:
    store = await store_factory.open()
    owners = ["", "alice", "bob", "alice", "bob", "alice"]
    await commit(
        store,
        inserts=[msgspec.structs.replace(job(i + 1, Q), owner=o) for i, o in enumerate(owners)],
    )
    for _ in range(2):
        alice = await store.list_jobs(owner="alice")
        assert [(j.id, j.owner) for j in alice] == [(6, "alice"), (4, "alice"), (2, "alice")]
        assert [j.id for j in await store.list_jobs(owner="bob", before=5)] == [3]
        assert [j.id for j in await store.list_jobs(owner="")] == [1]
        assert len(await store.list_jobs()) == 6
        store = await store_factory.restart(store)
