"""What every store backend must answer to the dashboard's job filters: ``list_jobs`` by
task, by idempotency key and by creation time (``created_after`` <= created_at <
``created_before``), together with status, queue and owner, newest first, paged by keyset
(``before``) without gaps or repeats, and the same after a restart."""

from __future__ import annotations

import random
from typing import Any

import msgspec
import pytest

from actors.scheduler.job import Job
from actors.scheduler.store.base import StoreBackend
from tests.store.conftest import StoreFactory
from tests.store.records import F, Q, S, commit, job

_TASKS = ["billing.charge", "mail.send", "ünïcode.task"]


def _job(i: int) -> Job:
    """Job ``i``: task by i % 3, status by i % 4, created at 1000 + i (a clock that, once,
    went back: jobs 41-45 were created before 40), a key on every fifth."""
    created = 1000.0 + i - (10 if 41 <= i <= 45 else 0)
    made = job(i, [Q, S, F, S][i % 4], key=f"order-{i}" if i % 5 == 0 else None, created_at=created)
    return msgspec.structs.replace(made, task=_TASKS[i % 3], owner="alice" if i % 2 else "bob")


def _expected(**given: Any) -> list[int]:
    found = []
    for i in range(60, 0, -1):
        made = _job(i)
        if given.get("task") not in (None, made.task):
            continue
        if given.get("key") not in (None, made.idempotency_key):
            continue
        if given.get("status") not in (None, made.status):
            continue
        if given.get("owner") not in (None, made.owner):
            continue
        if given.get("created_after") is not None and made.created_at < given["created_after"]:
            continue
        if given.get("created_before") is not None and made.created_at >= given["created_before"]:
            continue
        found.append(i)
    return found


async def _store(store_factory: StoreFactory) -> StoreBackend:
    store = await store_factory.open()
    ids = list(range(1, 61))
    random.Random(18).shuffle(ids)
    for start in range(0, 60, 23):
        await commit(store, inserts=[_job(i) for i in ids[start : start + 23]])
    return store


FILTERS: list[dict[str, Any]] = [
    {"task": "billing.charge"},
    {"task": "ünïcode.task", "status": S},
    {"task": "nowhere"},
    {"key": "order-35"},
    {"key": "order-35", "owner": "bob"},  # alice's job: bob does not see it
    {"key": "order-36"},
    {"created_after": 1030.0},
    {"created_before": 1036.0},
    {"created_after": 1020.0, "created_before": 1040.5, "task": "mail.send"},
    {"created_after": 1100.0},
    {"created_before": 1000.5},
    {"owner": "alice", "task": "mail.send", "status": F},
]


async def test_list_jobs_filters_by_task_key_and_creation_time(
    store_factory: StoreFactory,
) -> None:
    store = await _store(store_factory)
    for _ in range(2):
        for given in FILTERS:
            got = await store.list_jobs(limit=1000, **given)
            assert [j.id for j in got] == _expected(**given), given
        store = await store_factory.restart(store)


@pytest.mark.parametrize(
    "given",
    [{"task": "mail.send"}, {"created_after": 1005.0, "created_before": 1050.0}, {"status": S}],
)
async def test_filtered_listings_page_by_keyset_without_gaps_or_repeats(
    store_factory: StoreFactory, given: dict[str, Any]
) -> None:
    store = await _store(store_factory)
    seen: list[int] = []
    before: int | None = None
    for _ in range(100):
        page = [j.id for j in await store.list_jobs(before=before, limit=3, **given)]
        seen += page
        if len(page) < 3:
            break
        before = page[-1]
    assert seen == _expected(**given)
