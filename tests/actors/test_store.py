"""The store actor over the SQLite backend on a real file: group commit, compare-and-swap
guard, single writer, checkpoints, the file vanishing or filling up. (What every backend
must do is in tests/store/test_conformance.py.)"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from actors.errors import StoreInconsistent
from actors.lifecycle import JobState
from actors.runtime import Actor
from actors.scheduler.jobs import Job
from actors.scheduler.messages import Write, Written
from actors.scheduler.ops import Ops
from actors.scheduler.store import sqlite_chain
from actors.scheduler.store.actor import StoreActor
from actors.scheduler.store.sqlite import SqliteStore
from actors.scheduler.store.sqlite_file import StoreLocked
from transport import protocol as wire


class Inbox(Actor):
    def __init__(self) -> None:
        super().__init__("inbox")
        self.received: list[Any] = []


def Store(path: str, clock: Any = None) -> StoreActor:
    """The store actor over SQLite at ``path``."""
    backend = SqliteStore(path)
    return StoreActor(backend) if clock is None else StoreActor(backend, clock=clock)


async def fetch(store: StoreActor, sql: str) -> list[tuple[Any, ...]]:
    """Look into the file directly (the backend's connection), as a test may."""
    backend = store.backend
    assert isinstance(backend, SqliteStore)
    assert backend.db is not None
    return [tuple(r) for r in await backend.db.execute_fetchall(sql)]


def row(job_id: int, args: bytes = b"\x90") -> Job:
    """A QUEUED job, as the scheduler creates them."""
    spec = wire.JobSpec("t")
    job = Job(
        job_id,
        spec.task,
        msgspec.Raw(args),
        spec.kwargs,
        0,
        "default",
        (),
        0,
        None,
        None,
        1.0,
        JobState.QUEUED,
    )
    return job


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
        assert (await fetch(store, "SELECT count(*) FROM jobs"))[0][0] == 100
    finally:
        task.cancel()
        await store.on_stop()


class Feeder(Actor):
    """Stands in for the scheduler: each message it handles becomes a write."""

    def __init__(self, store: StoreActor, inbox: Actor) -> None:
        super().__init__("feeder")
        self.store, self.inbox = store, inbox

    async def handle(self, message: Any) -> None:
        self.store.tell(Write(Ops(inserts=[row(message)]), self.inbox, message))


@contextlib.asynccontextmanager
async def store_with_feeder(tmp_path: Path) -> AsyncIterator[tuple[StoreActor, Inbox, Feeder]]:
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
    assert (await fetch(store, "SELECT status FROM jobs"))[0][0] == "QUEUED", "rolled back"
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
    import actors.scheduler.store.sqlite as store_module

    store = Store(str(tmp_path / "c.db"))
    await store.open()
    rows = await fetch(store, "PRAGMA wal_autocheckpoint")
    assert rows == [(0,)], "SQLite must not checkpoint inside a COMMIT"
    inbox = Inbox()
    replies_before_checkpoint: list[int] = []
    checkpoint = sqlite_chain.checkpoint_wal

    def recording_checkpoint(conn: Any) -> None:
        replies_before_checkpoint.append(inbox.mailbox.qsize())
        checkpoint(conn)

    monkeypatch.setattr(sqlite_chain, "checkpoint_wal", recording_checkpoint)
    monkeypatch.setattr(store_module, "CHECKPOINT_EVERY_COMMITS", 3)
    for i in range(1, 7):
        await store._commit([Write(Ops(inserts=[row(i)]), inbox, i)])
    assert store.backend.counters()["checkpoints"] == 2
    assert replies_before_checkpoint == [3, 6], "each checkpoint ran after its commit replied"
    await store.on_stop()


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_commits_are_power_loss_safe_by_default() -> None:
    from actors.config import SchedulerConfig
    from actors.scheduler.store.sqlite_rows import connection_pragmas

    assert SchedulerConfig().durability == "full"
    assert "PRAGMA synchronous=FULL" in connection_pragmas()
    assert "PRAGMA synchronous=NORMAL" in connection_pragmas("normal")


async def test_a_new_store_fsyncs_every_commit(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "c.db"))
    await store.open()
    try:
        assert await fetch(store, "PRAGMA synchronous") == [(2,)], "2 is FULL"
    finally:
        await store.on_stop()


async def test_a_full_database_is_reported_as_full_and_nothing_of_it_acknowledged(
    tmp_path: Path,
) -> None:
    # The same code path as a full disk: SQLite answers SQLITE_FULL when the file may not
    # grow (here by PRAGMA max_page_count; tests/e2e/test_startup.py fills a real tmpfs).
    from actors.errors import StoreFull

    store = Store(str(tmp_path / "c.db"))
    await store.open()
    inbox = Inbox()
    await store._commit([Write(Ops(inserts=[row(1)]), inbox, "kept")])
    pages = (await fetch(store, "PRAGMA page_count"))[0][0]
    await fetch(store, f"PRAGMA max_page_count={pages}")
    big = [row(i, args=b"x" * 50_000) for i in range(2, 12)]
    with pytest.raises(StoreFull, match="disk is full") as raised:
        await store._commit([Write(Ops(inserts=big), inbox, "lost")])
    assert "rollback" not in str(raised.value)
    assert [m.tags for m in _drain(inbox)] == [["kept"]], "no reply for the failed commit"
    await store.on_stop()
    reopened = Store(str(tmp_path / "c.db"))
    await reopened.open()
    assert await fetch(reopened, "SELECT id FROM jobs") == [(1,)]
    await reopened.on_stop()


def _drain(actor: Actor) -> list[Any]:
    out = []
    while not actor.mailbox.empty():
        out.append(actor.mailbox.get_nowait())
    return out


async def test_a_commit_after_a_second_idle_checks_the_file_is_still_at_its_path(
    tmp_path: Path,
) -> None:
    from actors.errors import StoreLost

    clock = FakeClock()
    folder = tmp_path / "data"
    folder.mkdir()
    store = Store(str(folder / "c.db"), clock=clock)
    await store.open()
    inbox = Inbox()
    await store._commit([Write(Ops(inserts=[row(1)]), inbox, 1)])
    for name in os.listdir(folder):
        os.remove(folder / name)
    clock.now += 1.5  # idle for more than a second
    with pytest.raises(StoreLost, match="was deleted"):
        await store._commit([Write(Ops(inserts=[row(2)]), inbox, 2)])
    assert [m.tags for m in _drain(inbox)] == [[1]], "nothing acknowledged after the delete"
    with pytest.raises(StoreLost):  # and it never commits again
        await store._commit([Write(Ops(inserts=[row(3)]), inbox, 3)])
    await store.on_stop()


async def test_busy_commits_check_the_file_at_least_once_a_second(tmp_path: Path) -> None:
    from actors.errors import StoreLost

    clock = FakeClock()
    store = Store(str(tmp_path / "c.db"), clock=clock)
    await store.open()
    inbox = Inbox()
    os.rename(tmp_path / "c.db", tmp_path / "moved.db")
    lost: StoreLost | None = None
    for i in range(1, 100):
        clock.now += 0.1  # a commit every 100 ms: never idle
        try:
            await store._commit([Write(Ops(inserts=[row(i)]), inbox, i)])
        except StoreLost as exc:
            lost = exc
            break
    assert lost is not None
    assert "c.db was deleted" in str(lost)
    assert len(_drain(inbox)) < 10, "stopped within a second of commits"
    await store.on_stop()


async def test_the_store_stops_the_system_with_its_error_instead_of_crashing(
    tmp_path: Path,
) -> None:
    from actors.errors import StoreLost
    from actors.runtime import ActorSystem

    clock = FakeClock()
    store = Store(str(tmp_path / "c.db"), clock=clock)
    await store.open()
    system = ActorSystem()
    inbox = Inbox()
    system.add(store)
    await system.start()
    os.remove(tmp_path / "c.db")
    clock.now += 5
    store.tell(Write(Ops(inserts=[row(1)]), inbox, 1))
    with pytest.raises(StoreLost):  # the error itself, not ActorCrashed with a traceback
        await asyncio.wait_for(system.run(), 5)
    assert inbox.mailbox.empty()
    assert isinstance(store.backend, SqliteStore)
    assert store.backend.db is None, "closed on the way out"


@pytest.mark.parametrize("kind", ["not sqlite", "missing folder"])
async def test_a_failed_open_is_one_store_error_and_leaves_no_thread(
    tmp_path: Path, kind: str
) -> None:
    import threading

    from actors.errors import StoreError

    path = tmp_path / ("c.db" if kind == "not sqlite" else "no/c.db")
    if kind == "not sqlite":
        path.write_text("plain text, not a database\n" * 50)
    threads = threading.active_count()
    with pytest.raises(StoreError, match=str(path) if kind == "not sqlite" else "does not exist"):
        await Store(str(path)).open()
    assert threading.active_count() == threads


async def test_a_commit_reported_after_the_store_failed_is_not_acknowledged(
    tmp_path: Path,
) -> None:
    """The chain may still report a commit once the store has stopped for another reason
    (its watch found the file deleted, a read failed): a commit into a deleted file is not
    durable, so it is not acknowledged, as ``_commit`` refused to commit at all."""
    from actors.errors import StoreLost
    from actors.scheduler.messages import Committed

    store = Store(str(tmp_path / "c.db"))
    await store.open()
    inbox = Inbox()
    store.failed = StoreLost("database c.db", "was deleted")  # as _stop_for sets it
    await store._committed(Committed([Write(Ops(inserts=[row(1)]), inbox, 1)], [], 1, 0.0))
    assert _drain(inbox) == []
    await store.on_stop()
