"""SQLite's commit chain (issue 19): one transaction after another in the database thread,
each taking what the store's queue holds the moment the last one ended.

Why: committing one batch at a time from the event loop left the database thread idle
between commits while its result went back to the loop and the store actor took the next
batch: a gap of 0.9 ms at the median and 1.9 ms on average between commits of about 3 ms,
in a throughput run. Here the thread takes the next batch itself (``WriteQueue.take``,
which is thread-safe), so the next commit starts at once; each commit is reported to the
store actor through the loop (``post``), which acknowledges its writes, as before, only
after the commit returned. The chain ends when the queue gives no write, or gives reads
(they run after this transaction, through aiosqlite, which the chain would hold up), or a
commit fails; a failed commit is reported with its error and nothing after it is taken.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from typing import Protocol

from actors.errors import StoreInconsistent
from actors.scheduler.messages import Committed
from actors.scheduler.store import sqlite_file
from actors.scheduler.store.base import TakeWrites, next_transaction
from actors.scheduler.store.sqlite_rows import write_batch


class Checkpointing(Protocol):
    """The store's WAL bookkeeping (``SqliteStore``)."""

    path: str

    def checkpoint_due(self, n_ops: int) -> bool: ...

    def checkpointed(self) -> None: ...


def checkpoint_wal(conn: sqlite3.Connection) -> None:
    """Copy what the WAL holds back into the database file (PASSIVE: never waits)."""
    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()


def run(
    conn: sqlite3.Connection,
    take: TakeWrites,
    post: Callable[[Committed], None],
    store: Checkpointing,
) -> None:
    """The chain itself; runs in the database thread (see the module docstring)."""
    while (taken := next_transaction(take, post)) is not None:
        writes, reads, batch = taken
        started = time.perf_counter()
        try:
            write_batch(conn, batch)
        except (sqlite3.Error, OSError) as exc:
            post(Committed(writes, reads, 0, 0.0, sqlite_file.write_error(exc, store.path)))
            return
        except StoreInconsistent as exc:
            post(Committed(writes, reads, 0, 0.0, exc))
            return
        post(Committed(writes, reads, len(batch), time.perf_counter() - started))
        # Also when reads end the chain: a commit that carries reads counts as any other
        # (a client reading after every write would otherwise keep the WAL from shrinking).
        if store.checkpoint_due(len(batch)):
            try:
                checkpoint_wal(conn)
            except (sqlite3.Error, OSError) as exc:
                error = sqlite_file.translate(exc, store.path, "checkpoint")
                post(Committed([], [], 0, 0.0, error))
                return
            store.checkpointed()
        if reads:
            return
