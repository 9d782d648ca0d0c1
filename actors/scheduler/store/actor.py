"""The store actor: owns the aiosqlite connection and group-commits every write.

Whatever ``Write`` messages pile up while one transaction commits go into the
next one, together (group commit): an idle scheduler commits at once, a busy
one commits hundreds of jobs per transaction. Before committing, the store lets
the actors that feed it finish what they already have in hand (a few loop
turns at most, never a timed wait), so the writes they are about to make join
the same transaction: a new job's INSERT and its lease commit together. Only
after COMMIT returns does each writer get its ``Written`` reply (one per writer
per commit), so acknowledgements always follow durability. Every job update is
a compare-and-swap on the expected previous status (``UPDATE … WHERE id=? AND
status=?``); if SQLite matches fewer rows than memory expected, the store raises
StoreInconsistent and the scheduler stops instead of guessing.

The file is opened in WAL mode with an exclusive lock, so a second scheduler
on the same file is refused at start-up instead of becoming a second writer;
``PRAGMA quick_check`` runs first and a damaged file is refused. By default every
commit is fsynced (``synchronous=FULL``: an acknowledged job survives power
loss); ``durability="normal"`` trades that for speed. Any failure to write (a full
disk, the file deleted under the scheduler: see ``actors.scheduler.store.sqlite_file``) stops the
scheduler with that one error and acknowledges nothing more.
The store checkpoints the WAL itself, in the database thread after a commit's
replies have gone out, instead of letting SQLite do it inside a COMMIT (where
the few milliseconds of a checkpoint would hold back that commit's leases).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable
from typing import Any

import aiosqlite
import msgspec

from actors.config import DEFAULT_DURABILITY, MAX_BATCH_OPS
from actors.errors import CorralError, StoreError, StoreInconsistent
from actors.metrics import Histogram
from actors.runtime import PUBLISH, Actor
from actors.scheduler.messages import Query, Write, Written
from actors.scheduler.store import sqlite_file as dbfile
from actors.scheduler.store.sqlite_file import StoreLocked
from actors.scheduler.store.sqlite_schema import (
    INSERT_ATTEMPT,
    INSERT_EDGE,
    INSERT_JOB,
    INSERT_WORKFLOW,
    JOB_COLUMNS,
    SCHEMA,
    SCHEMA_VERSION,
    UPDATE_JOB,
    in_chunks,
    migrate,
)

log = logging.getLogger("corral.store")

# The most loop turns a commit waits for its feeders (the scheduler, and the strategy that
# feeds the scheduler) to empty their mailboxes. Two turns cover submit -> match -> lease.
MAX_FEEDER_TURNS = 4

# SQLite's automatic checkpoint runs inside the COMMIT that crosses 1,000 WAL pages. The
# store turns it off and checkpoints after about as much work (a job costs about four
# pages over its life at low load, a row about a 25th of a page in big batches).
CHECKPOINT_EVERY_COMMITS = 256
CHECKPOINT_EVERY_OPS = 20_000

# A group commit this small (a few rows, WAL, no fsync) takes tens of microseconds:
# less than handing it to aiosqlite's thread and back (~0.1 ms each way on this
# machine). Bigger batches go to the thread so the loop keeps receiving meanwhile.
# With durability "full" every commit waits for an fsync (0.5 ms p50, 5.6 ms p99 here),
# so every commit goes to the thread: the loop must not stall on the disk.
INLINE_COMMIT_OPS = 64


# The file-identity check (see actors.scheduler.store.sqlite_file): at least this often
# while commits flow, and before the first commit after this long without one (an os.stat
# of the file and its WAL costs ~3 µs warm, ~25 µs after an idle gap: too much for every commit at
# 200 jobs/s, nothing once a second). An idle scheduler checks every WATCH_EVERY_S.
CHECK_EVERY_S = 1.0
WATCH_EVERY_S = 2.0

__all__ = [
    "JOB_COLUMNS",
    "SCHEMA",
    "SCHEMA_VERSION",
    "Ops",
    "Store",
    "StoreLocked",
    "connection_pragmas",
    "in_chunks",
]


class Ops(msgspec.Struct):
    """One writer's share of a transaction: new rows, CAS updates, finished attempts."""

    inserts: list[tuple[Any, ...]] = []
    updates: list[tuple[Any, ...]] = []
    attempts: list[tuple[Any, ...]] = []
    workflows: list[tuple[Any, ...]] = []
    edges: list[tuple[int, int]] = []
    # Jobs created by this write: inserted in the state they have when it is sealed, so
    # a job created and queued in one step costs one INSERT, not an INSERT and an UPDATE.
    new_jobs: list[Any] = []
    new_ids: set[int] = set()

    def seal(self) -> Ops:
        """Build the rows of the new jobs now; later changes to them are later writes."""
        self.inserts += [job.insert_row() for job in self.new_jobs]
        self.new_jobs = []
        self.new_ids = set()
        return self

    def __len__(self) -> int:
        return (
            len(self.new_jobs)
            + len(self.inserts)
            + len(self.updates)
            + len(self.attempts)
            + len(self.workflows)
            + len(self.edges)
        )


def _write_batch(conn: sqlite3.Connection, batch: tuple[list[tuple[Any, ...]], ...]) -> None:
    """One transaction for a whole group of writes; runs in the database thread."""
    workflows, inserts, edges, updates, attempts = batch
    conn.execute("BEGIN")
    try:
        if workflows:
            conn.executemany(INSERT_WORKFLOW, workflows)
        if inserts:
            conn.executemany(INSERT_JOB, inserts)
        if edges:
            conn.executemany(INSERT_EDGE, edges)
        if updates:
            cursor = conn.executemany(UPDATE_JOB, updates)
            if cursor.rowcount != len(updates):
                raise StoreInconsistent(
                    f"compare-and-swap matched {cursor.rowcount} of {len(updates)} job rows"
                )
        if attempts:
            conn.executemany(INSERT_ATTEMPT, attempts)
        conn.execute("COMMIT")
    except BaseException:
        # A failed COMMIT (disk full, I/O error) may already have rolled back; a ROLLBACK
        # then raises "no transaction is active" and would hide the real cause.
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        raise


def connection_pragmas(durability: str = DEFAULT_DURABILITY) -> list[str]:
    """How the store sets up its connection, in order (bench/idle.py times the same)."""
    sync = "FULL" if durability == "full" else "NORMAL"
    return [
        "PRAGMA busy_timeout=500",
        "PRAGMA locking_mode=EXCLUSIVE",
        "PRAGMA journal_mode=WAL",
        f"PRAGMA synchronous={sync}",
        # 64 MiB of page cache keeps the hot B-tree pages of the jobs table in memory.
        "PRAGMA cache_size=-65536",
        "PRAGMA wal_autocheckpoint=0",  # the store checkpoints itself: see Store._checkpoint
    ]


def _checkpoint_wal(conn: sqlite3.Connection) -> None:
    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()


async def _in_db_thread(db: aiosqlite.Connection, fn: Any, *args: Any) -> Any:
    """Run ``fn(sqlite3_connection, *args)`` in aiosqlite's own thread, in one hop.

    Each awaited aiosqlite call costs a thread hand-off (about 0.1 ms); a group commit
    is five or more statements, so it goes over as one function instead. This uses
    aiosqlite's internal ``_execute``/``_conn`` (unchanged from 0.17 to 0.22, and
    pyproject pins the range); ``Store.open`` checks they exist and says so if not."""
    return await db._execute(lambda: fn(db._conn, *args))  # type: ignore[no-untyped-call]


class Store(Actor):
    """Group-committing writer; also answers the rare reads the scheduler needs."""

    def __init__(
        self,
        path: str,
        durability: str = DEFAULT_DURABILITY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__("store")
        self.path = path
        self.durability = durability
        self.clock = clock
        self.db: aiosqlite.Connection | None = None
        self.identity: dbfile.FileIdentity | None = None
        self._checked_at = self._committed_at = 0.0
        self.failed: StoreError | None = None
        self.inline_ops = INLINE_COMMIT_OPS if durability == "normal" else -1
        self.commits = 0
        self.committed_ops = 0
        self.commit_latency = Histogram()
        self.checkpoints = 0
        self._commits_since_checkpoint = 0
        self._ops_since_checkpoint = 0
        # Actors whose pending messages are likely to end in a write (set by the brain).
        self.feeders: tuple[Actor, ...] = ()

    async def open(self) -> None:
        """Open, check and lock the file; any failure raises StoreError (one clear line)
        and leaves nothing open."""
        if not hasattr(aiosqlite.Connection, "_execute"):
            raise CorralError(
                f"aiosqlite {aiosqlite.__version__} lacks Connection._execute, which the group "
                "commit uses; install aiosqlite>=0.17,<0.23"
            )
        # Before SQLite reads the WAL (it would drop a damaged one without a word).
        warning = dbfile.check_wal(self.path)  # 32 bytes and a stat: no thread needed
        dbfile.check_wal_owner(self.path)  # frame headers only: no thread needed either
        self.db = await dbfile.connect(self.path)
        try:
            for pragma in connection_pragmas(self.durability):
                await self.db.execute(pragma)
            await _in_db_thread(self.db, dbfile.quick_check, self.path)
            await _in_db_thread(self.db, dbfile.give_database_id)
            upgraded_from = await _in_db_thread(self.db, migrate, self.path)
            # Take the write lock now and keep it (exclusive locking mode).
            await self.db.execute("BEGIN IMMEDIATE")
            await self.db.execute("COMMIT")
        except BaseException as exc:
            await dbfile.close_quietly(self.db)
            self.db = None
            if isinstance(exc, sqlite3.Error | OSError):
                raise dbfile.translate(exc, self.path, "open") from None
            raise
        if warning:  # only now: a scheduler holding the file may have been mid-write
            log.warning("%s", warning)
        if upgraded_from is not None:
            log.info(
                "upgraded database %s from schema %d to %d",
                self.path,
                upgraded_from,
                SCHEMA_VERSION,
            )
        self.identity = dbfile.FileIdentity(self.path)
        self._checked_at = self._committed_at = self.clock()

    async def on_start(self) -> None:
        if self.system is not None:
            self.spawn(self._watch_file(), "watch-file")

    async def on_stop(self) -> None:
        db, self.db = self.db, None
        await dbfile.close_quietly(db)

    async def _watch_file(self) -> None:
        """Check the file's identity while idle, so a scheduler nobody talks to still
        stops when its database is deleted."""
        while True:
            await asyncio.sleep(WATCH_EVERY_S)
            if self.clock() - self._checked_at >= WATCH_EVERY_S:
                try:
                    self._check_file()
                except StoreError as exc:
                    await self._stop_for(exc)

    def _check_file(self) -> None:
        self._checked_at = self.clock()
        if self.identity is not None:
            self.identity.check()

    async def _stop_for(self, exc: StoreError) -> None:
        """Stop the scheduler with ``exc`` as its one error line, and never commit again."""
        self.failed = exc
        if self.system is None:
            raise exc
        log.debug("store stopping: %s", exc)
        self.system.fail(exc)
        await asyncio.Event().wait()  # parked until the system cancels every actor

    async def fetch(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """A direct read, for start-up recovery before the actors run."""
        assert self.db is not None
        return [tuple(row) for row in await self.db.execute_fetchall(sql, params)]

    async def _run(self) -> None:
        await self.on_start()
        mailbox = self.mailbox
        while True:
            writes: list[Write] = []
            queries: list[Query] = []
            n_ops = turns = 0
            message = await mailbox.get()
            while True:
                if message is PUBLISH:
                    self._publish_metrics()
                elif isinstance(message, Write):
                    writes.append(message)
                    n_ops += len(message.ops)
                else:
                    queries.append(message)
                if n_ops >= MAX_BATCH_OPS:
                    break
                while (
                    mailbox.empty() and writes and turns < MAX_FEEDER_TURNS and self._feeders_busy()
                ):
                    turns += 1
                    await asyncio.sleep(0)  # one loop turn: the feeders run, maybe write
                if mailbox.empty():
                    break
                message = mailbox.get_nowait()
            if writes:
                try:
                    await self._commit(writes)
                except StoreError as exc:
                    await self._stop_for(exc)
                except StoreInconsistent as exc:
                    await self._stop_for(
                        StoreError(
                            self.path,
                            f"database {self.path} disagrees with the scheduler's memory "
                            f"({exc}): another writer, or a damaged file; stopping rather "
                            "than risk double billing",
                        )
                    )
            for query in queries:
                await self._answer(query)

    def _feeders_busy(self) -> bool:
        return any(not feeder.mailbox.empty() for feeder in self.feeders)

    async def _commit(self, writes: list[Write]) -> None:
        db = self.db
        assert db is not None
        inserts: list[tuple[Any, ...]] = []
        updates: list[tuple[Any, ...]] = []
        attempts: list[tuple[Any, ...]] = []
        workflows: list[tuple[Any, ...]] = []
        edges: list[tuple[int, int]] = []
        for write in writes:
            ops = write.ops
            inserts += ops.inserts
            updates += ops.updates
            attempts += ops.attempts
            workflows += ops.workflows
            edges += ops.edges
        if self.failed is not None:
            raise self.failed
        started = time.perf_counter()
        batch = (workflows, inserts, edges, updates, attempts)
        n_ops = len(inserts) + len(updates) + len(attempts) + len(edges) + len(workflows)
        try:
            if n_ops <= self.inline_ops:
                _write_batch(db._conn, batch)  # cheaper than the thread hand-off it would cost
            else:
                await _in_db_thread(db, _write_batch, batch)
        except (sqlite3.Error, OSError) as exc:
            raise dbfile.translate(exc, self.path, "write") from None
        now = self.clock()
        # Before any reply: a commit into a file that no longer has a name is not durable.
        if now - self._committed_at > CHECK_EVERY_S or now - self._checked_at >= CHECK_EVERY_S:
            self._check_file()
        self._committed_at = now
        self.commit_latency.observe(time.perf_counter() - started)
        self.commits += 1
        self.committed_ops += len(inserts) + len(updates) + len(attempts) + len(edges)
        tags: dict[Actor, list[Any]] = {}
        for write in writes:
            tags.setdefault(write.reply_to, []).append(write.tag)
        for writer, committed in tags.items():
            writer.tell(Written(committed))
        self._commits_since_checkpoint += 1
        self._ops_since_checkpoint += n_ops
        if (
            self._commits_since_checkpoint >= CHECKPOINT_EVERY_COMMITS
            or self._ops_since_checkpoint >= CHECKPOINT_EVERY_OPS
        ):
            await self._checkpoint()

    async def _checkpoint(self) -> None:
        """Copy the WAL back into the database file, off the loop: the replies of the
        commit before it are already on their way while it runs."""
        assert self.db is not None
        try:
            await _in_db_thread(self.db, _checkpoint_wal)
        except (sqlite3.Error, OSError) as exc:
            raise dbfile.translate(exc, self.path, "checkpoint") from None
        self.checkpoints += 1
        self._commits_since_checkpoint = self._ops_since_checkpoint = 0

    def metrics(self) -> dict[str, Any]:
        return {
            "commits": self.commits,
            "checkpoints": self.checkpoints,
            "ops": self.committed_ops,
            "commit_latency": self.commit_latency.snapshot(),
        }

    async def _answer(self, query: Query) -> None:
        assert self.db is not None
        try:
            rows = await self.db.execute_fetchall(query.sql, query.params)
        except Exception as exc:
            if not query.reply.done():
                query.reply.set_exception(exc)
            return
        if not query.reply.done():
            query.reply.set_result([tuple(row) for row in rows])
