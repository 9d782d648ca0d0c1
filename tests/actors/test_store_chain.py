"""SQLite's commit chain (``actors.scheduler.store.sqlite_chain``) on a real file: the next
transaction starts in the database thread as soon as one ends, taking what arrived
meanwhile; a failure ends the chain with nothing after it taken; reads end it too."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from actors.errors import StoreError
from actors.scheduler.messages import Committed, Read, Write
from actors.scheduler.ops import Ops
from actors.scheduler.store import sqlite_chain
from actors.scheduler.store.sqlite import SqliteStore
from actors.scheduler.store.write_queue import WriteQueue
from tests.store.records import job


def insert(job_id: int) -> Write:
    return Write(Ops(inserts=[job(job_id)]), None, job_id)


async def opened(tmp_path: Path) -> SqliteStore:
    store = SqliteStore(str(tmp_path / "c.db"))  # durability "full": the chain in the thread
    await store.open()
    return store


async def test_writes_that_arrive_during_a_commit_go_in_the_next_one_of_the_same_chain(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = await opened(tmp_path)
    queue = WriteQueue()
    first_commit_started, let_it_end = threading.Event(), threading.Event()
    write_batch = sqlite_chain.write_batch

    def held_first(conn: sqlite3.Connection, ops: Ops) -> None:
        if not first_commit_started.is_set():
            first_commit_started.set()
            assert let_it_end.wait(10)
        write_batch(conn, ops)

    monkeypatch.setattr(sqlite_chain, "write_batch", held_first)
    reports: list[Committed] = []
    queue.add(insert(1))
    try:
        chain = asyncio.create_task(store.commit_chain(queue.take, reports.append))
        assert await asyncio.to_thread(first_commit_started.wait, 10)
        queue.extend([insert(2), insert(3)])  # while transaction 1 is in the thread
        let_it_end.set()
        await asyncio.wait_for(chain, 10)  # one chain: no hop to the loop between commits
        assert [[w.tag for w in r.writes] for r in reports] == [[1], [2, 3]]
        assert all(r.error is None and r.ops == len(r.writes) for r in reports)
        assert not queue
    finally:
        let_it_end.set()
        await store.close()


async def test_a_failed_commit_ends_the_chain_and_nothing_after_it_is_taken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = await opened(tmp_path)
    queue = WriteQueue()
    taken: list[Any] = []

    def take() -> tuple[list[Write], list[Read]]:
        writes, reads = queue.take()
        taken.append([w.tag for w in writes])
        queue.add(insert(len(taken) + 10))  # there is always more to commit
        return writes, reads

    def full_disk(conn: sqlite3.Connection, ops: Ops) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(sqlite_chain, "write_batch", full_disk)
    reports: list[Committed] = []
    queue.add(insert(1))
    try:
        await asyncio.wait_for(store.commit_chain(take, reports.append), 10)
        assert taken == [[1]], "nothing taken after the failed commit"
        assert len(reports) == 1
        assert isinstance(reports[0].error, StoreError)
        assert "full" in str(reports[0].error)
    finally:
        await store.close()


async def test_a_read_ends_the_chain_once_the_writes_before_it_are_committed(
    tmp_path: Path,
) -> None:
    """The read is answered through aiosqlite, which the chain would hold up: the chain
    ends with the transaction that includes every write before the read."""
    store = await opened(tmp_path)
    queue = WriteQueue()
    read = Read(None, asyncio.get_running_loop().create_future())
    queue.extend([insert(1), read, insert(2)])
    takes = 0

    def take() -> tuple[list[Write], list[Read]]:
        nonlocal takes
        takes += 1
        queue.add(insert(10 + takes))  # more is always waiting
        return queue.take()

    reports: list[Committed] = []
    try:
        await asyncio.wait_for(store.commit_chain(take, reports.append), 10)
        assert [([w.tag for w in r.writes], r.reads) for r in reports] == [([1, 2, 11], [read])]
        assert takes == 1, "the chain ended after the read's transaction"
    finally:
        await store.close()


async def test_commits_that_carry_reads_count_towards_the_wal_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A chain that ends on a read still counts its commit: a client that reads after every
    write (submit, then ask) would otherwise leave the WAL growing without end (the store
    turned SQLite's own checkpoints off)."""
    import actors.scheduler.store.sqlite as store_module

    monkeypatch.setattr(store_module, "CHECKPOINT_EVERY_COMMITS", 3)
    store = await opened(tmp_path)
    loop = asyncio.get_running_loop()
    try:
        for i in range(1, 7):
            queue = WriteQueue()
            read = Read(None, loop.create_future())
            queue.extend([insert(i), read])
            reports: list[Committed] = []
            await asyncio.wait_for(store.commit_chain(queue.take, reports.append), 10)
            assert [([w.tag for w in r.writes], r.reads) for r in reports] == [([i], [read])]
        assert store.checkpoints == 2
    finally:
        await store.close()


async def test_a_failed_housekeeping_step_reports_the_error_without_the_committed_writes(
    tmp_path: Path,
) -> None:
    """The chain on the loop (``durability="normal"``): a checkpoint that fails after a
    commit was reported is reported alone; the commit's writes and reads are not reported a
    second time, as though they were not durable (and the reads answered twice)."""
    from actors.scheduler.store.sqlite_file import translate

    store = SqliteStore(str(tmp_path / "c.db"), "normal")
    await store.open()

    async def failing_checkpoint(n_ops: int) -> None:
        raise translate(sqlite3.OperationalError("disk I/O error"), store.path, "checkpoint")

    store.after_commit = failing_checkpoint  # type: ignore[method-assign]
    queue = WriteQueue()
    read = Read(None, asyncio.get_running_loop().create_future())
    queue.extend([insert(1), read])
    reports: list[Committed] = []
    try:
        await asyncio.wait_for(store.commit_chain(queue.take, reports.append), 10)
        assert [([w.tag for w in r.writes], r.reads, r.error is None) for r in reports] == [
            ([1], [read], True),
            ([], [], False),
        ]
    finally:
        await store.close()
