"""The stripped scheduler's two databases for ``bench/ceiling.py``, with corral's durable
settings: SQLite in WAL mode with ``synchronous=FULL`` (every commit fsynced), an exclusive
lock, 64 MiB of page cache, and the WAL checkpointed by the store after a commit's replies
every 256 commits or 20,000 operations, as corral's SQLite store does (the commit itself
runs in a thread, as aiosqlite's does, so the scheduler's loop keeps receiving); PostgreSQL
through asyncpg with ``synchronous_commit=on``, new jobs by binary ``COPY`` and results by
one ``UPDATE ... FROM unnest(...)``, as corral's PostgreSQL store writes them.

One table, ``ceiling_jobs``: id, task, args, status, token, result, with only its primary
key. Every result is a compare-and-swap on (id, token, status QUEUED) whose row count is
checked, as corral checks its own.
"""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Any

CHECKPOINT_EVERY_COMMITS, CHECKPOINT_EVERY_OPS = 256, 20_000  # as corral's SQLite store


class SqliteStore:
    """A fresh SQLite file, every commit fsynced before it returns."""

    PRAGMAS = ("locking_mode=EXCLUSIVE", "journal_mode=WAL", "synchronous=FULL",
               "cache_size=-16384", "wal_autocheckpoint=0")  # fmt: skip
    INSERT = "INSERT INTO ceiling_jobs (id, task, args, status, token) VALUES (?, ?, ?, ?, ?)"
    UPDATE = ("UPDATE ceiling_jobs SET status = 'SUCCEEDED', result = ? "
              "WHERE id = ? AND token = ? AND status = 'QUEUED'")  # fmt: skip

    def __init__(self, path: str) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        for pragma in self.PRAGMAS:
            self.conn.execute(f"PRAGMA {pragma}").fetchall()
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS ceiling_jobs (id INTEGER PRIMARY KEY, task TEXT NOT NULL,"
            " args BLOB NOT NULL, status TEXT NOT NULL, token INTEGER NOT NULL, result BLOB)"
        )
        self.commits = self.ops = 0

    async def commit(self, inserts: list[tuple[Any, ...]], updates: list[tuple[Any, ...]]) -> None:
        await asyncio.to_thread(self._commit, inserts, [(r, i, t) for i, t, r in updates])

    def _commit(self, inserts: list[tuple[Any, ...]], updates: list[tuple[Any, ...]]) -> None:
        conn = self.conn
        conn.execute("BEGIN")
        try:
            conn.executemany(self.INSERT, inserts)
            changed = conn.total_changes
            conn.executemany(self.UPDATE, updates)
            if conn.total_changes - changed != len(updates):
                raise RuntimeError("a result's compare-and-swap matched no row")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        self.commits, self.ops = self.commits + 1, self.ops + len(inserts) + len(updates)

    async def after_replies(self) -> None:
        if self.commits >= CHECKPOINT_EVERY_COMMITS or self.ops >= CHECKPOINT_EVERY_OPS:
            self.commits = self.ops = 0
            sql = "PRAGMA wal_checkpoint(PASSIVE)"
            await asyncio.to_thread(lambda: self.conn.execute(sql).fetchall())

    async def succeeded(self) -> int:
        sql = "SELECT count(*) FROM ceiling_jobs WHERE status = 'SUCCEEDED'"
        return int(self.conn.execute(sql).fetchone()[0])

    async def close(self) -> None:
        self.conn.close()


class PostgresStore:
    """A table of its own in the database a DSN names (dropped again at the end)."""

    UPDATE = """UPDATE ceiling_jobs AS j SET status = 'SUCCEEDED', result = u.result
        FROM unnest($1::bigint[], $2::bigint[], $3::bytea[]) AS u(id, token, result)
        WHERE j.id = u.id AND j.token = u.token AND j.status = 'QUEUED'"""

    async def open(self, dsn: str) -> PostgresStore:
        import asyncpg

        self.conn = await asyncpg.connect(dsn, server_settings={"synchronous_commit": "on"})
        await self.conn.execute(
            "DROP TABLE IF EXISTS ceiling_jobs; CREATE TABLE ceiling_jobs (id bigint PRIMARY KEY,"
            " task text NOT NULL, args bytea NOT NULL, status text NOT NULL,"
            " token bigint NOT NULL, result bytea)"
        )
        return self

    async def commit(self, inserts: list[tuple[Any, ...]], updates: list[tuple[Any, ...]]) -> None:
        async with self.conn.transaction():
            if inserts:
                columns = ["id", "task", "args", "status", "token"]
                await self.conn.copy_records_to_table(
                    "ceiling_jobs", records=inserts, columns=columns
                )
            if updates:
                status = await self.conn.execute(
                    self.UPDATE, *map(list, zip(*updates, strict=True))
                )
                if int(status.rsplit(" ", 1)[-1]) != len(updates):
                    raise RuntimeError("a result's compare-and-swap matched no row")

    async def after_replies(self) -> None:
        pass

    async def succeeded(self) -> int:
        sql = "SELECT count(*) FROM ceiling_jobs WHERE status = 'SUCCEEDED'"
        return int(await self.conn.fetchval(sql))

    async def close(self) -> None:
        await self.conn.execute("DROP TABLE ceiling_jobs")  # leave the database as found
        await self.conn.close()
