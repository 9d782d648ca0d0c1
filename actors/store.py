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
on the same file is refused at start-up instead of becoming a second writer.
The store checkpoints the WAL itself, in the database thread after a commit's
replies have gone out, instead of letting SQLite do it inside a COMMIT (where
the few milliseconds of a checkpoint would hold back that commit's leases).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

import aiosqlite
import msgspec

from actors.config import MAX_BATCH_OPS
from actors.errors import CorralError, StoreInconsistent
from actors.messages import Query, Write, Written
from actors.metrics import Histogram
from actors.runtime import PUBLISH, Actor

log = logging.getLogger("corral.store")

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY,
    task TEXT NOT NULL,
    args BLOB NOT NULL,
    kwargs BLOB NOT NULL,
    priority INTEGER NOT NULL,
    queue TEXT NOT NULL,
    depends_on BLOB NOT NULL,
    max_retries INTEGER NOT NULL,
    idempotency_key TEXT,
    timeout REAL,
    created_at REAL NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    token INTEGER NOT NULL,
    worker TEXT,
    started_at REAL,
    finished_at REAL,
    not_before REAL NOT NULL,
    result BLOB,
    error TEXT,
    backoff_base REAL,
    backoff_factor REAL,
    backoff_cap REAL,
    workflow_id INTEGER,
    step TEXT
);
-- partial: most jobs have no key, and a UNIQUE column would index every NULL too
CREATE UNIQUE INDEX IF NOT EXISTS jobs_key ON jobs(idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_workflow ON jobs(workflow_id) WHERE workflow_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS workflows (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    idempotency_key TEXT UNIQUE,
    created_at REAL NOT NULL
);
-- parent -> child, so a re-queued parent finds the descendants it revives
CREATE TABLE IF NOT EXISTS edges (
    parent INTEGER NOT NULL,
    child INTEGER NOT NULL,
    PRIMARY KEY (parent, child)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS jobs_live ON jobs(id)
    WHERE status IN ('PENDING', 'QUEUED', 'RUNNING');
CREATE TABLE IF NOT EXISTS attempts (
    job_id INTEGER NOT NULL,
    token INTEGER NOT NULL,
    worker TEXT,
    started_at REAL,
    finished_at REAL,
    outcome TEXT NOT NULL,
    error TEXT,
    PRIMARY KEY (job_id, token)
);
"""

JOB_COLUMNS = (
    "id, task, args, kwargs, priority, queue, depends_on, max_retries, idempotency_key, "
    "timeout, created_at, status, attempts, token, worker, started_at, finished_at, "
    "not_before, result, error, backoff_base, backoff_factor, backoff_cap, workflow_id, step"
)
INSERT_JOB = f"INSERT INTO jobs ({JOB_COLUMNS}) VALUES ({', '.join('?' * 25)})"
INSERT_WORKFLOW = (
    "INSERT INTO workflows (id, name, idempotency_key, created_at) VALUES (?, ?, ?, ?)"
)
INSERT_EDGE = "INSERT OR IGNORE INTO edges (parent, child) VALUES (?, ?)"
UPDATE_JOB = (
    "UPDATE jobs SET status=?, attempts=?, token=?, worker=?, started_at=?, finished_at=?, "
    "not_before=?, result=?, error=? WHERE id=? AND status=?"
)
INSERT_ATTEMPT = (
    "INSERT OR REPLACE INTO attempts (job_id, token, worker, started_at, finished_at, outcome, "
    "error) VALUES (?, ?, ?, ?, ?, ?, ?)"
)


# SQLite caps host parameters per statement (32,766 by default); stay far below it.
SQL_CHUNK = 900


def in_chunks(values: Sequence[T]) -> Iterator[tuple[list[T], str]]:
    """``values`` in pieces small enough for one ``IN (...)``, each with its placeholders."""
    for start in range(0, len(values), SQL_CHUNK):
        chunk = list(values[start : start + SQL_CHUNK])
        yield chunk, ",".join("?" * len(chunk))


# Bumped when the tables change shape; a file with another version is refused at start-up
# with a clear message (there are no migrations yet).
SCHEMA_VERSION = 1

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
INLINE_COMMIT_OPS = 64


class StoreLocked(CorralError):
    """Raised at start-up when another scheduler already holds the database file."""

    def __init__(self, path: str) -> None:
        super().__init__(
            f"database {path} is in use by another corral scheduler; stop it first or pass --db"
        )
        self.path = path


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
        conn.execute("ROLLBACK")
        raise


def connection_pragmas(durability: str) -> list[str]:
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

    def __init__(self, path: str, durability: str = "normal") -> None:
        super().__init__("store")
        self.path = path
        self.durability = durability
        self.db: aiosqlite.Connection | None = None
        self.commits = 0
        self.committed_ops = 0
        self.commit_latency = Histogram()
        self.checkpoints = 0
        self._commits_since_checkpoint = 0
        self._ops_since_checkpoint = 0
        # Actors whose pending messages are likely to end in a write (set by the brain).
        self.feeders: tuple[Actor, ...] = ()

    async def open(self) -> None:
        if not hasattr(aiosqlite.Connection, "_execute"):
            raise CorralError(
                f"aiosqlite {aiosqlite.__version__} lacks Connection._execute, which the group "
                "commit uses; install aiosqlite>=0.17,<0.23"
            )
        # check_same_thread=False: small group commits run inline on the event loop
        # (see _commit); the store actor never has an aiosqlite call in flight then.
        self.db = await aiosqlite.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            for pragma in connection_pragmas(self.durability):
                await self.db.execute(pragma)
            await self._check_schema()
            await self.db.executescript(SCHEMA)
            await self.db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            # Take the write lock now and keep it (exclusive locking mode).
            await self.db.execute("BEGIN IMMEDIATE")
            await self.db.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            await self.db.close()
            self.db = None
            if "locked" in str(exc) or "busy" in str(exc):
                raise StoreLocked(self.path) from None
            raise

    async def _check_schema(self) -> None:
        assert self.db is not None
        tables = await self.db.execute_fetchall(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'jobs'"
        )
        rows = await self.db.execute_fetchall("PRAGMA user_version")
        version = next(iter(rows))[0]
        if list(tables) and version != SCHEMA_VERSION:
            await self.db.close()
            self.db = None
            raise CorralError(
                f"database {self.path} was written by an incompatible corral version (schema "
                f"{version}, this corral needs {SCHEMA_VERSION}); point --db at a new file"
            )

    async def on_stop(self) -> None:
        if self.db is not None:
            await self.db.close()
            self.db = None

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
                await self._commit(writes)
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
        started = time.perf_counter()
        batch = (workflows, inserts, edges, updates, attempts)
        n_ops = len(inserts) + len(updates) + len(attempts) + len(edges) + len(workflows)
        if n_ops <= INLINE_COMMIT_OPS:
            _write_batch(db._conn, batch)  # cheaper than the thread hand-off it would cost
        else:
            await _in_db_thread(db, _write_batch, batch)
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
        await _in_db_thread(self.db, _checkpoint_wal)
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
