"""A read answered in its own task must not share the backend's connection with the next
commit: SQLite with ``durability="normal"`` commits small batches on the event loop's
thread (the same connection a read uses in aiosqlite's thread), and PostgreSQL has one
connection, which refuses a second operation while one is in progress. Only SQLite with
``durability="full"`` runs its commits in the database thread, in turn with the reads.

Each case: a purge (a read that writes, in a transaction of its own) is held for a moment
in the database, and a write arrives meanwhile; the write must be committed and
acknowledged, the purge answered, and the store must not stop."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from actors.runtime import Actor, ActorSystem
from actors.scheduler.messages import Write, Written
from actors.scheduler.ops import Ops
from actors.scheduler.store import postgres_purge, sqlite_file, sqlite_purge
from actors.scheduler.store.actor import StoreActor, read
from actors.scheduler.store.base import StoreBackend
from actors.scheduler.store.postgres import PostgresStore
from actors.scheduler.store.sqlite import SqliteStore
from tests.store.records import job

HELD_S = 0.3


class Inbox(Actor):
    def __init__(self) -> None:
        super().__init__("inbox")


@pytest.fixture(params=["sqlite-normal", "sqlite-full", "postgres"])
async def backend(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[StoreBackend, threading.Event]]:
    """An open backend whose purge holds its transaction for HELD_S (set once it has)."""
    held = threading.Event()
    store: StoreBackend
    if request.param == "postgres":
        store = PostgresStore(request.getfixturevalue("postgres_dsn"))
        purge = postgres_purge.purge

        async def slow_pg_purge(conn: Any, *args: Any) -> Any:
            async with conn.transaction():
                await conn.execute("SELECT 1 FROM jobs FOR UPDATE")
                held.set()
                await conn.execute(f"SELECT pg_sleep({HELD_S})")
            return await purge(conn, *args)

        monkeypatch.setattr(postgres_purge, "purge", slow_pg_purge)
    else:
        store = SqliteStore(str(tmp_path / "c.db"), request.param.removeprefix("sqlite-"))
        sqlite_purge_fn = sqlite_purge.purge

        def slow_sqlite_purge(conn: sqlite3.Connection, *args: Any) -> Any:
            with sqlite_file.transaction(conn, "BEGIN IMMEDIATE"):
                held.set()
                time.sleep(HELD_S)
            return sqlite_purge_fn(conn, *args)

        monkeypatch.setattr(sqlite_purge, "purge", slow_sqlite_purge)
    await store.open()
    try:
        yield store, held
    finally:
        await store.close()


async def test_a_write_during_a_read_is_committed_and_the_store_keeps_serving(
    backend: tuple[StoreBackend, threading.Event],
) -> None:
    store_backend, held = backend
    store = StoreActor(store_backend)
    system = ActorSystem()
    system.add(store)
    await system.start()
    inbox = Inbox()
    serving = asyncio.create_task(system.run())
    try:
        store.tell(Write(Ops(inserts=[job(1)]), inbox, 1))
        assert (await asyncio.wait_for(inbox.mailbox.get(), 5)).tags == [1]
        purging = asyncio.create_task(read(store, StoreBackend.purge, 1.0, 0.0, 10))
        assert await asyncio.to_thread(held.wait, 5)  # the purge is in the database
        store.tell(Write(Ops(inserts=[job(2)]), inbox, 2))
        written = await asyncio.wait_for(inbox.mailbox.get(), 5)
        assert isinstance(written, Written)
        assert written.tags == [2]
        purged = await asyncio.wait_for(purging, 5)
        assert purged.jobs == []
        assert store.failed is None
        assert not serving.done()
        assert [j.id for j in await read(store, StoreBackend.jobs, [1, 2])] == [1, 2]
    finally:
        system.request_stop()
        await asyncio.wait_for(serving, 5)


async def test_stopping_does_not_wait_for_a_commit_the_database_never_answers(
    postgres_dsn: str,
) -> None:
    """A commit chain on the loop (PostgreSQL) is cancelled on the way out, as the store's
    own task was before the chain: a link gone silent must not hold the shutdown for the
    command timeout (a minute). Nothing of the unanswered commit is acknowledged."""
    from tests.helpers.tcp_proxy import proxy_to

    with proxy_to(postgres_dsn) as proxy:
        store = StoreActor(PostgresStore(proxy.dsn(postgres_dsn)))
        await store.open()
        system = ActorSystem()
        system.add(store)
        await system.start()
        inbox = Inbox()
        store.tell(Write(Ops(inserts=[job(1)]), inbox, 1))
        assert (await asyncio.wait_for(inbox.mailbox.get(), 5)).tags == [1]
        await asyncio.to_thread(proxy.blackhole)
        store.tell(Write(Ops(inserts=[job(2)]), inbox, 2))
        await asyncio.sleep(0.3)  # the commit of job 2 goes out, never answered
        assert store._chain is not None
        started = time.monotonic()
        await asyncio.wait_for(system.stop(), 10)
        assert time.monotonic() - started < 5
        assert inbox.mailbox.empty(), "nothing of the unanswered commit acknowledged"
