"""The store actor over the SQLite backend on a real file: group commit, compare-and-swap
guard, single writer, checkpoints, the file vanishing or filling up. (What every backend
must do is in tests/store/test_conformance.py.)"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from actors.errors import StoreError
from actors.lifecycle import JobState
from actors.runtime import Actor, ActorSystem
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
        args,
        bytes(spec.kwargs),
        0,
        "default",
        (),
        0,
        1.0,
        JobState.QUEUED,
    )
    return job


@contextlib.asynccontextmanager
async def serving(store: StoreActor) -> AsyncIterator[ActorSystem]:
    """``store`` opened and running in an actor system, as the scheduler runs it: writes
    told to it commit through its commit chain; stopped (its file closed) on the way out."""
    await store.open()
    system = ActorSystem()
    system.add(store)
    await system.start()
    try:
        yield system
    finally:
        await system.stop()


async def written(inbox: Actor) -> list[Any]:
    """The tags of the next ``Written`` reply ``inbox`` gets."""
    reply = await asyncio.wait_for(inbox.mailbox.get(), 5)
    assert isinstance(reply, Written)
    return reply.tags


async def stopped(system: ActorSystem) -> StoreError:
    """The store error the system stops with (the store stops it; nothing else here does)."""
    with pytest.raises(StoreError) as raised:
        await asyncio.wait_for(system.run(), 5)
    return raised.value


async def rows_in(path: str, sql: str) -> list[tuple[Any, ...]]:
    """What a scheduler that opens the file next finds."""
    store = Store(path)
    await store.open()
    try:
        return await fetch(store, sql)
    finally:
        await store.on_stop()


async def chain_ended(store: StoreActor) -> None:
    """Until the commit chain running, if any, has ended (it takes nothing more): writes
    told next wait for the next chain, which takes them together."""
    if store._chain is not None:
        await asyncio.wait_for(asyncio.wait([store._chain]), 5)


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


async def test_a_compare_and_swap_that_misses_rolls_its_transaction_back_and_stops_the_store(
    tmp_path: Path,
) -> None:
    """A transaction whose compare-and-swap misses (the job is not in the status the
    scheduler expects) applies nothing, not even the other writes that share it,
    acknowledges none of them, and stops the scheduler."""
    path = str(tmp_path / "c.db")
    store = Store(path)
    inbox = Inbox()
    async with serving(store) as system:
        store.tell(Write(Ops(inserts=[row(1)]), inbox, "insert"))
        assert await written(inbox) == ["insert"]
        await chain_ended(store)
        update = ("RUNNING", 1, 1, "w", 1.0, None, 0.0, None, None, 1, "PENDING")  # is QUEUED
        store.tell(Write(Ops(inserts=[row(2)]), inbox, "beside"))  # told together: one commit
        store.tell(Write(Ops(updates=[update]), inbox, "cas"))
        error = await stopped(system)
    assert "disagrees with the scheduler's memory" in str(error)
    assert _drain(inbox) == [], "nothing of the transaction acknowledged"
    assert await rows_in(path, "SELECT id, status FROM jobs") == [(1, "QUEUED")], "rolled back"


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


async def test_the_store_checkpoints_the_wal_itself_and_no_reply_waits_for_a_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite's own checkpoint is off (it would run inside a COMMIT and hold back leases):
    the commit chain checkpoints every CHECKPOINT_EVERY_COMMITS commits, after reporting
    the commit, so its writers' replies go out while the checkpoint runs. (The chain's
    checkpoint runs in the database thread, so replies are not all sent before it starts,
    as they were when the loop committed one batch at a time: that they need not wait for
    it is what matters.)"""
    import actors.scheduler.store.sqlite as store_module

    monkeypatch.setattr(store_module, "CHECKPOINT_EVERY_COMMITS", 3)
    checkpoint = sqlite_chain.checkpoint_wal
    started, release = threading.Semaphore(0), threading.Semaphore(0)

    def held_checkpoint(conn: sqlite3.Connection) -> None:  # in the database thread
        started.release()
        if not release.acquire(timeout=10):
            raise sqlite3.OperationalError("the test never let the checkpoint go")
        checkpoint(conn)

    monkeypatch.setattr(sqlite_chain, "checkpoint_wal", held_checkpoint)
    store = Store(str(tmp_path / "c.db"))
    inbox = Inbox()
    async with serving(store):
        rows = await fetch(store, "PRAGMA wal_autocheckpoint")
        assert rows == [(0,)], "SQLite must not checkpoint inside a COMMIT"
        for i in range(1, 7):
            store.tell(Write(Ops(inserts=[row(i)]), inbox, i))
            assert await written(inbox) == [i], "replied while its checkpoint is held"
            if i % 3 == 0:
                assert await asyncio.to_thread(started.acquire, timeout=5), "checkpoint due"
                release.release()
        await chain_ended(store)  # the chain that committed 6 and checkpointed after it
        assert store.backend.counters()["checkpoints"] == 2
    assert not started.acquire(timeout=0), "two checkpoints in six commits, no more"


async def test_a_checkpoint_that_fails_after_a_commit_acknowledges_that_commit_once_and_stops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The commit before a failed checkpoint is durable: its writers get their one reply;
    then the store stops with the checkpoint's error, acknowledging nothing again."""
    import actors.scheduler.store.sqlite as store_module

    def failing_checkpoint(conn: sqlite3.Connection) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(store_module, "CHECKPOINT_EVERY_COMMITS", 1)
    monkeypatch.setattr(sqlite_chain, "checkpoint_wal", failing_checkpoint)
    path = str(tmp_path / "c.db")
    store = Store(path)
    inbox = Inbox()
    async with serving(store) as system:
        store.tell(Write(Ops(inserts=[row(1)]), inbox, 1))
        assert await written(inbox) == [1]
        error = await stopped(system)
    assert "cannot checkpoint" in str(error)
    assert "disk I/O error" in str(error)
    assert _drain(inbox) == [], "acknowledged once"
    assert await rows_in(path, "SELECT id FROM jobs") == [(1,)]


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


async def test_a_new_store_fsyncs_every_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every commit of the chain runs on a connection with synchronous FULL."""
    write_batch = sqlite_chain.write_batch
    synchronous: list[int] = []

    def recording(conn: sqlite3.Connection, ops: Ops) -> None:  # in the database thread
        synchronous.append(conn.execute("PRAGMA synchronous").fetchone()[0])
        write_batch(conn, ops)

    monkeypatch.setattr(sqlite_chain, "write_batch", recording)
    store = Store(str(tmp_path / "c.db"))
    inbox = Inbox()
    async with serving(store):
        for i in (1, 2):
            store.tell(Write(Ops(inserts=[row(i)]), inbox, i))
            assert await written(inbox) == [i]
    assert synchronous == [2, 2], "2 is FULL"


async def test_a_full_database_is_reported_as_full_and_nothing_of_it_acknowledged(
    tmp_path: Path,
) -> None:
    # The same code path as a full disk: SQLite answers SQLITE_FULL when the file may not
    # grow (here by PRAGMA max_page_count; tests/e2e/test_startup.py fills a real tmpfs).
    from actors.errors import StoreFull

    path = str(tmp_path / "c.db")
    store = Store(path)
    inbox = Inbox()
    async with serving(store) as system:
        store.tell(Write(Ops(inserts=[row(1)]), inbox, "kept"))
        assert await written(inbox) == ["kept"]
        pages = (await fetch(store, "PRAGMA page_count"))[0][0]
        await fetch(store, f"PRAGMA max_page_count={pages}")
        big = [row(i, args=b"x" * 50_000) for i in range(2, 12)]
        store.tell(Write(Ops(inserts=big), inbox, "lost"))
        error = await stopped(system)
    assert isinstance(error, StoreFull)
    assert "disk is full" in str(error)
    assert "rollback" not in str(error)
    assert _drain(inbox) == [], "no reply for the failed commit"
    assert await rows_in(path, "SELECT id FROM jobs") == [(1,)]


def _drain(actor: Actor) -> list[Any]:
    out = []
    while not actor.mailbox.empty():
        out.append(actor.mailbox.get_nowait())
    return out


async def test_a_commit_after_a_second_idle_checks_the_file_is_still_at_its_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first commit after more than a second without one checks the file before it
    replies, even when the idle watch checked it less than a second ago: a commit into a
    deleted file is not durable, so it is not acknowledged."""
    import actors.scheduler.store.actor as actor_module
    from actors.errors import StoreLost

    clock = FakeClock()
    folder = tmp_path / "data"
    folder.mkdir()
    store = Store(str(folder / "c.db"), clock=clock)
    inbox = Inbox()
    monkeypatch.setattr(actor_module, "WATCH_EVERY_S", 0.05)  # the idle watch, soon
    async with serving(store) as system:
        checked = asyncio.Event()
        verify = store.backend.verify

        def watched_verify() -> None:
            checked.set()
            verify()

        monkeypatch.setattr(store.backend, "verify", watched_verify)
        store.tell(Write(Ops(inserts=[row(1)]), inbox, 1))
        assert await written(inbox) == [1]
        clock.now += 0.5
        await asyncio.wait_for(checked.wait(), 5)  # the watch found the file in place
        monkeypatch.setattr(actor_module, "WATCH_EVERY_S", 2.0)  # and checks no more here
        for name in os.listdir(folder):
            os.remove(folder / name)
        clock.now += 0.7  # 1.2 s since the last commit, 0.7 s since the watch's check
        store.tell(Write(Ops(inserts=[row(2)]), inbox, 2))
        error = await stopped(system)
    assert isinstance(error, StoreLost)
    assert "was deleted" in str(error)
    assert _drain(inbox) == [], "nothing acknowledged after the delete"


async def test_busy_commits_check_the_file_at_least_once_a_second(tmp_path: Path) -> None:
    from actors.errors import StoreLost

    clock = FakeClock()
    store = Store(str(tmp_path / "c.db"), clock=clock)
    inbox = Inbox()
    async with serving(store) as system:
        os.rename(tmp_path / "c.db", tmp_path / "moved.db")
        run = asyncio.create_task(system.run())
        acknowledged = 0
        for i in range(1, 100):
            clock.now += 0.1  # a commit every 100 ms: never idle
            store.tell(Write(Ops(inserts=[row(i)]), inbox, i))
            reply = asyncio.create_task(inbox.mailbox.get())
            await asyncio.wait([reply, run], timeout=5, return_when=asyncio.FIRST_COMPLETED)
            reply.cancel()
            if run.done():
                break
            assert reply.done(), "each commit is acknowledged or stops the store"
            acknowledged += 1
        with pytest.raises(StoreLost, match=r"c\.db was deleted"):
            await run
    assert acknowledged < 10, "stopped within a second of commits"


async def test_the_store_stops_the_system_with_its_error_instead_of_crashing(
    tmp_path: Path,
) -> None:
    from actors.errors import StoreLost

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
    durable, so it is not acknowledged."""
    from actors.errors import StoreLost
    from actors.scheduler.messages import Committed

    store = Store(str(tmp_path / "c.db"))
    await store.open()
    inbox = Inbox()
    store.failed = StoreLost("database c.db", "was deleted")  # as _stop_for sets it
    try:
        store.tell(Committed([Write(Ops(inserts=[row(1)]), inbox, 1)], [], 1, 0.0))
        assert _drain(inbox) == []
        [report] = _drain(store)  # left for the store's task, which acknowledges nothing
        await store._receive(report)
        assert _drain(inbox) == []
    finally:
        await store.on_stop()  # else the database thread keeps a failed run from exiting


async def test_a_commit_is_acknowledged_as_the_chain_reports_it_with_no_loop_turn(
    tmp_path: Path,
) -> None:
    """The chain reports each commit on the loop's thread; the writers' replies are in their
    mailboxes when that report returns, not a loop turn later through the store's mailbox
    (which cost every slot's turn one more hop: result, commit, next lease)."""
    from actors.scheduler.messages import Committed

    store = Store(str(tmp_path / "c.db"))
    await store.open()
    first, second = Inbox(), Inbox()
    try:
        writes = [Write(Ops(), first, "a"), Write(Ops(), second, "b"), Write(Ops(), first, "c")]
        store.tell(Committed(writes, [], 3, 0.001))
        assert [m.tags for m in _drain(first)] == [["a", "c"]]
        assert [m.tags for m in _drain(second)] == [["b"]]
        assert store.mailbox.empty()
    finally:
        await store.on_stop()


async def test_a_commit_whose_file_check_fails_is_not_acknowledged_and_stops_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file is checked before any reply (at least once a second); if it fails as the
    chain reports a commit, nothing of that commit is acknowledged, nor of any later one,
    and the store stops the scheduler with that error."""
    from actors.errors import StoreLost
    from actors.scheduler.messages import Committed, StoreFailed

    clock = FakeClock()
    store = Store(str(tmp_path / "c.db"), clock=clock)
    await store.open()
    inbox = Inbox()

    def deleted() -> None:
        raise StoreLost("database c.db", "was deleted")

    monkeypatch.setattr(store.backend, "verify", deleted)
    try:
        clock.now += 1.5  # the check is due
        store.tell(Committed([Write(Ops(), inbox, 1)], [], 1, 0.0))
        store.tell(Committed([Write(Ops(), inbox, 2)], [], 1, 0.0))
        assert _drain(inbox) == []
        assert isinstance(store.failed, StoreLost)
        told = _drain(store)
        assert isinstance(told[0], StoreFailed)
        assert told[0].error is store.failed
        with pytest.raises(StoreLost):  # no system to stop: the actor raises it
            await store._receive(told[0])
    finally:
        await store.on_stop()


async def test_a_defect_while_acknowledging_a_commit_crashes_the_scheduler(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite's chain reports a commit in a loop callback, where an exception would only be
    logged: a defect met while acknowledging it (here in the file check) must crash the
    store's actor, and so the scheduler, not leave its writers waiting forever."""
    from actors.errors import ActorCrashed

    clock = FakeClock()
    store = Store(str(tmp_path / "c.db"), clock=clock)
    inbox = Inbox()

    def broken() -> None:
        raise RuntimeError("a defect in the check")

    async with serving(store) as system:
        monkeypatch.setattr(store.backend, "verify", broken)
        clock.now += 5  # the check is due
        store.tell(Write(Ops(inserts=[row(1)]), inbox, 1))
        with pytest.raises(ActorCrashed, match="a defect in the check"):
            await asyncio.wait_for(system.run(), 5)
    assert _drain(inbox) == []


async def test_a_commit_that_ends_once_the_store_is_stopping_is_not_acknowledged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite's thread finishes the transaction it is in when the store stops, and reports
    it; the scheduler stopping then is not told (nothing would read it), and no read is
    started on a store being closed."""
    entered, release = hold_first_commit(monkeypatch)
    store = Store(str(tmp_path / "c.db"))
    inbox = Inbox()
    await store.open()
    system = ActorSystem()
    system.add(store)
    await system.start()
    store.tell(Write(Ops(inserts=[row(1)]), inbox, 1))
    assert await asyncio.to_thread(entered.wait, 5), "the commit started"
    stopping = asyncio.create_task(system.stop())
    for _ in range(100):  # loop turns until the store's on_stop has begun
        if store._stopping:
            break
        await asyncio.sleep(0)
    assert store._stopping, "the store began to stop"
    release.set()
    await asyncio.wait_for(stopping, 5)
    assert _drain(inbox) == []
    assert store._reading == set()
    assert await rows_in(str(tmp_path / "c.db"), "SELECT id FROM jobs") == [(1,)]


def hold_first_commit(monkeypatch: pytest.MonkeyPatch) -> tuple[threading.Event, threading.Event]:
    """The database thread's first commit waits, once started (``entered``), until the test
    sets ``release``; the others run as usual."""
    write_batch = sqlite_chain.write_batch
    entered, release = threading.Event(), threading.Event()

    def held_first(conn: sqlite3.Connection, ops: Ops) -> None:  # in the database thread
        if not entered.is_set():
            entered.set()
            if not release.wait(timeout=10):
                raise sqlite3.OperationalError("the test never let the commit go")
        write_batch(conn, ops)

    monkeypatch.setattr(sqlite_chain, "write_batch", held_first)
    return entered, release


async def test_a_write_told_while_a_commit_runs_joins_the_next_one_with_no_loop_turn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database thread takes the next commit's writes the moment one commit ends,
    whatever the event loop is doing. A write told meanwhile must already be where it takes
    them from: had it waited in the store's mailbox for the loop's next turn, a lease told
    a moment before a commit ended would wait a whole commit more."""
    entered, release = hold_first_commit(monkeypatch)
    store = Store(str(tmp_path / "c.db"))
    inbox = Inbox()
    async with serving(store):
        taken: list[list[Any]] = []
        first_two: list[list[Any]] = []  # copied at the second take: the chain takes on
        took = threading.Event()
        take = store.queue.take

        def recording_take() -> tuple[list[Write], list[Any]]:  # in the database thread
            writes, reads = take()
            taken.append([write.tag for write in writes])
            if len(taken) == 2:
                first_two.extend(taken)
                took.set()
            return writes, reads

        store.queue.take = recording_take  # type: ignore[method-assign]
        store.tell(Write(Ops(inserts=[row(1)]), inbox, 1))
        assert await asyncio.to_thread(entered.wait, 5), "the first commit started"
        # No await from here until the chain's next take: the loop does not turn.
        store.tell(Write(Ops(inserts=[row(2)]), inbox, 2))
        release.set()
        assert took.wait(timeout=5), "the chain took again after its commit"
        assert first_two == [[1], [2]]
        assert await written(inbox) == [1]
        assert await written(inbox) == [2]


async def test_a_write_told_as_a_chain_ends_is_committed_by_the_next_chain(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write told after the chain's last take found nothing, but before the loop has heard
    that the chain ended, joins the queue directly: the next chain must commit it."""
    entered, release = hold_first_commit(monkeypatch)
    store = Store(str(tmp_path / "c.db"))
    inbox = Inbox()
    async with serving(store):
        ended = threading.Event()
        take = store.queue.take

        def recording_take() -> tuple[list[Write], list[Any]]:  # in the database thread
            writes, reads = take()
            if not writes:
                ended.set()  # the chain takes nothing more and returns
            return writes, reads

        store.queue.take = recording_take  # type: ignore[method-assign]
        store.tell(Write(Ops(inserts=[row(1)]), inbox, 1))
        assert await asyncio.to_thread(entered.wait, 5), "the first commit started"
        release.set()
        assert ended.wait(timeout=5), "the chain found nothing more to take"
        assert store._chain is not None, "the loop has not heard of the chain's end yet"
        store.tell(Write(Ops(inserts=[row(2)]), inbox, 2))
        assert await written(inbox) == [1]
        assert await written(inbox) == [2]
        assert await fetch(store, "SELECT id FROM jobs ORDER BY id") == [(1,), (2,)]
