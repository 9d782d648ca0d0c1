"""What every store backend must do with schedules (issue 17): keep each one whole, read
them back by name across a restart, apply the writes and deletes of a batch in order, and
never keep a schedule's advance without the job of its fire time (one transaction, the
job's key unique). Run against every backend in conftest.py, through the interface only."""

from __future__ import annotations

from typing import Any

import pytest

from actors.errors import StoreInconsistent
from actors.scheduler.ops import Ops
from actors.scheduler.store.base import ScheduleRecord
from tests.store.conftest import StoreFactory
from tests.store.records import Q, commit, job


def row(name: str, **changes: Any) -> tuple[Any, ...]:
    """A schedule row (``SCHEDULE_FIELDS``)."""
    fields: dict[str, Any] = {
        "name": name,
        "spec": b"\x93\x00\x01\xa1x" + name.encode(),
        "owner": "",
        "created_at": 1000.5,
        "next_fire": 1010.0,
        "last_fire": None,
        "last_job": None,
        "skipped": 0,
        "paused": False,
    }
    fields.update(changes)
    return tuple(fields.values())


async def test_schedules_read_back_whole_by_name_also_after_a_restart(
    store_factory: StoreFactory,
) -> None:
    store = await store_factory.open()
    assert await store.schedules() == []
    full = row("b-nightly", owner="K" * 40, last_fire=1005.0, last_job=2**40, skipped=7)
    paused = row("a-hourly", next_fire=None, paused=True)
    await commit(store, schedules=[("b-nightly", full), ("a-hourly", paused)])
    for _ in range(2):
        assert await store.schedules() == [ScheduleRecord(*paused), ScheduleRecord(*full)]
        store = await store_factory.restart(store)


async def test_a_batch_writes_and_deletes_schedules_in_its_order(
    store_factory: StoreFactory,
) -> None:
    store = await store_factory.open()
    await commit(store, schedules=[("a", row("a")), ("b", row("b")), ("c", row("c"))])
    batch = Ops(
        schedules=[
            ("a", row("a", next_fire=1020.0, skipped=1)),  # written whole again
            ("b", None),  # removed
            ("c", None),  # removed, then added again in the same batch
            ("c", row("c", created_at=2000.0)),
            ("d", None),  # removing what is not there: nothing to do
        ]
    )
    await store.commit(batch)
    store = await store_factory.restart(store)
    assert await store.schedules() == [
        ScheduleRecord(*row("a", next_fire=1020.0, skipped=1)),
        ScheduleRecord(*row("c", created_at=2000.0)),
    ]


async def test_an_advance_whose_fire_time_has_a_job_already_leaves_nothing(
    store_factory: StoreFactory,
) -> None:
    """The unique key refuses a second job for a fire time, and with it the advance."""
    store = await store_factory.open()
    key = "schedule:a:1010"
    await commit(store, inserts=[job(1, Q, key=key)], schedules=[("a", row("a", next_fire=1020.0))])
    again = Ops(inserts=[job(2, Q, key=key)], schedules=[("a", row("a", next_fire=1030.0))])
    with pytest.raises(StoreInconsistent):
        await store.commit(again)
    store = await store_factory.restart(store)
    assert await store.schedules() == [ScheduleRecord(*row("a", next_fire=1020.0))]
    assert await store.ids_by_key([key]) == {key: 1}
    assert await store.jobs([2]) == []
