"""The store on a real SQLite file: group commit, compare-and-swap guard, single writer."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from actors.errors import StoreInconsistent
from actors.jobs import Job
from actors.lifecycle import JobState
from actors.messages import Write, Written
from actors.runtime import Actor
from actors.store import Ops, Store, StoreLocked
from transport import protocol as wire


class Inbox(Actor):
    def __init__(self) -> None:
        super().__init__("inbox")
        self.received: list[Any] = []


def row(job_id: int) -> tuple[Any, ...]:
    """A QUEUED job row, built the way the scheduler builds them."""
    spec = wire.JobSpec("t")
    job = Job(
        job_id,
        spec.task,
        spec.args,
        spec.kwargs,
        0,
        "default",
        [],
        0,
        None,
        None,
        1.0,
        JobState.QUEUED,
    )
    return job.insert_row()


async def test_writes_that_pile_up_are_committed_together_then_acknowledged(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "c.db"))
    await store.open()
    inbox = Inbox()
    for i in range(1, 101):
        store.tell(Write(Ops(inserts=[row(i)]), inbox, i))
    task = asyncio.create_task(store._run())
    try:
        tags = [(await asyncio.wait_for(inbox.mailbox.get(), 5)) for _ in range(100)]
        assert [t.tag for t in tags if isinstance(t, Written)] == list(range(1, 101))
        assert store.commits == 1, "100 waiting writes share one transaction"
        assert (await store.fetch("SELECT count(*) FROM jobs"))[0][0] == 100
    finally:
        task.cancel()
        await store.on_stop()


async def test_a_compare_and_swap_that_misses_stops_the_store(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "c.db"))
    await store.open()
    inbox = Inbox()
    await store._commit([Write(Ops(inserts=[row(1)]), inbox, "insert")])
    update = ("RUNNING", 1, 1, "w", 1.0, None, 0.0, None, None, 1, "PENDING")  # expects PENDING
    with pytest.raises(StoreInconsistent):
        await store._commit([Write(Ops(updates=[update]), inbox, "cas")])
    assert (await store.fetch("SELECT status FROM jobs"))[0][0] == "QUEUED", "rolled back"
    await store.on_stop()


async def test_a_second_store_on_the_same_file_is_refused(tmp_path: Path) -> None:
    first = Store(str(tmp_path / "c.db"))
    await first.open()
    try:
        with pytest.raises(StoreLocked, match="in use by another corral scheduler"):
            await Store(str(tmp_path / "c.db")).open()
    finally:
        await first.on_stop()


async def test_a_database_from_an_incompatible_schema_is_refused_clearly(tmp_path: Path) -> None:
    import sqlite3

    from actors.errors import CorralError

    path = tmp_path / "old.db"
    with sqlite3.connect(path) as old:
        old.execute("CREATE TABLE jobs (id INTEGER PRIMARY KEY)")
    with pytest.raises(CorralError, match="incompatible corral version"):
        await Store(str(path)).open()
    fresh = Store(str(tmp_path / "new.db"))
    await fresh.open()
    await fresh.on_stop()
    reopened = Store(str(tmp_path / "new.db"))
    await reopened.open()
    await reopened.on_stop()
