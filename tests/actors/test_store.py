"""The store on a real SQLite file: group commit, compare-and-swap guard, single writer."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
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
        written = await asyncio.wait_for(inbox.mailbox.get(), 5)
        assert isinstance(written, Written)
        assert written.tags == list(range(1, 101)), "one reply per writer, tags in order"
        assert store.commits == 1, "100 waiting writes share one transaction"
        assert (await store.fetch("SELECT count(*) FROM jobs"))[0][0] == 100
    finally:
        task.cancel()
        await store.on_stop()


class Feeder(Actor):
    """Stands in for the scheduler: each message it handles becomes a write."""

    def __init__(self, store: Store, inbox: Actor) -> None:
        super().__init__("feeder")
        self.store, self.inbox = store, inbox

    async def handle(self, message: Any) -> None:
        self.store.tell(Write(Ops(inserts=[row(message)]), self.inbox, message))


@contextlib.asynccontextmanager
async def store_with_feeder(tmp_path: Path) -> AsyncIterator[tuple[Store, Inbox, Feeder]]:
    """A store fed by one feeder, both running once the block's first await yields."""
    store = Store(str(tmp_path / "c.db"))
    await store.open()
    inbox = Inbox()
    feeder = Feeder(store, inbox)
    store.feeders = (feeder,)
    tasks = [asyncio.create_task(store._run()), asyncio.create_task(feeder._run())]
    try:
        yield store, inbox, feeder
    finally:
        for task in tasks:
            task.cancel()
        await store.on_stop()


async def test_a_write_waits_for_a_busy_feeder_and_commits_with_its_write(tmp_path: Path) -> None:
    # The low-load path of a submission: the INSERT reaches the store while the scheduler
    # still has the match in its mailbox; the lease it is about to write joins the commit.
    async with store_with_feeder(tmp_path) as (store, inbox, feeder):
        store.tell(Write(Ops(inserts=[row(1)]), inbox, 1))
        feeder.tell(2)
        written = await asyncio.wait_for(inbox.mailbox.get(), 5)
        assert written.tags == [1, 2]
        assert store.commits == 1


async def test_a_write_commits_at_once_when_its_feeders_are_idle(tmp_path: Path) -> None:
    async with store_with_feeder(tmp_path) as (store, inbox, feeder):
        store.tell(Write(Ops(inserts=[row(1)]), inbox, 1))
        assert (await asyncio.wait_for(inbox.mailbox.get(), 5)).tags == [1]
        feeder.tell(2)
        assert (await asyncio.wait_for(inbox.mailbox.get(), 5)).tags == [2]
        assert store.commits == 2


async def test_a_feeder_that_never_empties_its_mailbox_cannot_hold_a_commit_back(
    tmp_path: Path,
) -> None:
    store = Store(str(tmp_path / "c.db"))
    await store.open()
    inbox = Inbox()
    stuck = Inbox()  # never runs: its mailbox stays non-empty
    stuck.tell("busy")
    store.feeders = (stuck,)
    task = asyncio.create_task(store._run())
    try:
        store.tell(Write(Ops(inserts=[row(1)]), inbox, 1))
        assert (await asyncio.wait_for(inbox.mailbox.get(), 5)).tags == [1]
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


async def test_the_store_checkpoints_the_wal_itself_after_the_commits_replies_went_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import actors.store as store_module

    store = Store(str(tmp_path / "c.db"))
    await store.open()
    rows = await store.fetch("PRAGMA wal_autocheckpoint")
    assert rows == [(0,)], "SQLite must not checkpoint inside a COMMIT"
    inbox = Inbox()
    replies_before_checkpoint: list[int] = []
    checkpoint = store_module._checkpoint_wal

    def recording_checkpoint(conn: Any) -> None:
        replies_before_checkpoint.append(inbox.mailbox.qsize())
        checkpoint(conn)

    monkeypatch.setattr(store_module, "_checkpoint_wal", recording_checkpoint)
    monkeypatch.setattr(store_module, "CHECKPOINT_EVERY_COMMITS", 3)
    for i in range(1, 7):
        await store._commit([Write(Ops(inserts=[row(i)]), inbox, i)])
    assert store.checkpoints == 2
    assert replies_before_checkpoint == [3, 6], "each checkpoint ran after its commit replied"
    await store.on_stop()
