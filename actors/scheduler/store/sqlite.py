"""The SQLite store, the embedded default: opens and guards the file, commits batches, and
answers the scheduler's reads (the row mapping and the batch transaction are in
``sqlite_rows``, the tables and their migrations in ``sqlite_schema``, the file's own
failures in ``sqlite_file``).

The file is opened in WAL mode with SQLite's normal locking, so other programs can read it
while the scheduler runs (``sqlite3 corral.db``, ``corral backup``: WAL readers see the last
commit and never block a commit); a second scheduler on the same file is refused at
start-up by an ``flock`` on the file (``sqlite_file.FileLock``) instead of becoming a second
writer; ``PRAGMA quick_check`` runs first and a damaged file is refused. By default every
commit is fsynced (``synchronous=FULL``: an acknowledged job survives power loss);
``durability="normal"`` trades that for speed. Every job update is a compare-and-swap on
the expected status; if SQLite matches fewer rows than the scheduler expected, the commit
raises StoreInconsistent, as it does when an insert names an id or idempotency key the file
holds already.
The store checkpoints the WAL itself, after a commit was reported to the actor (which
sends its replies), instead of letting SQLite do it inside a COMMIT (where its few
milliseconds would hold back that commit's leases): ``after_commit``, or in the database
thread by the commit chain (``sqlite_chain``).
"""

from __future__ import annotations

import asyncio
import logging
import random
import sqlite3
from collections.abc import Callable, Collection
from typing import Any

import aiosqlite
import msgspec

from actors.config import DEFAULT_DURABILITY
from actors.errors import CorralError
from actors.lifecycle import JobState
from actors.scheduler.job import Job
from actors.scheduler.messages import Committed
from actors.scheduler.ops import SCHEDULE_FIELDS, Ops
from actors.scheduler.store import sqlite_chain, sqlite_file, sqlite_purge
from actors.scheduler.store.base import (
    AttemptRecord,
    LimitRecord,
    Purged,
    Recovered,
    ScheduleRecord,
    StoreBackend,
    TakeWrites,
    UnreadableRow,
    WorkflowRecord,
    damaged,
    recovery_problem,
)
from actors.scheduler.store.sqlite_rows import (
    SESSION_PRAGMAS,
    connection_pragmas,
    in_db_thread,
    read_jobs,
    write_batch,
)
from actors.scheduler.store.sqlite_schema import (
    DATABASE_ID,
    JOB_COLUMNS,
    SCHEMA_VERSION,
    in_chunks,
    migrate,
    refuse_foreign,
)

log = logging.getLogger("corral.store")

# SQLite's automatic checkpoint runs inside the COMMIT that crosses 1,000 WAL pages. The
# store turns it off and checkpoints after about as much work (a job costs about four
# pages over its life at low load, a row about a 25th of a page in big batches).
CHECKPOINT_EVERY_COMMITS = 256
CHECKPOINT_EVERY_OPS = 20_000

# A group commit this small (a few rows, WAL, no fsync) takes tens of microseconds: less
# than handing it to aiosqlite's thread and back (~0.1 ms each way on this machine).
# Bigger batches go to the thread so the loop keeps receiving meanwhile. With durability
# "full" every commit waits for an fsync (0.5 ms p50, 5.6 ms p99 here), so every commit
# goes to the thread: the loop must not stall on the disk.
INLINE_COMMIT_OPS = 64

# The pause before a second try at a file found locked at start-up: far longer than the
# microseconds in which two schedulers' first locks can cross, short beside a start-up.
LOCKED_RETRY_PAUSE_S = (0.05, 0.25)

# The WHERE of the partial index jobs_live, word for word (schema step 9): SQLite uses a
# partial index only for a query that spells its condition (an IN list would scan).
_LIVE = "(status = 'PENDING' OR status = 'QUEUED' OR status = 'RUNNING')"


# The dashboard's throughput chart: jobs ended per minute and status since a time. Written
# with jobs_finished's own WHERE term, word for word, so that partial index serves it (an
# IN list would scan the whole table).
ENDED_BY_MINUTE = (
    "SELECT CAST(finished_at / 60 AS INTEGER) AS minute, status, COUNT(*) FROM jobs "
    f"WHERE {sqlite_purge.TERMINAL} AND finished_at >= ? GROUP BY minute, status "
    "ORDER BY minute, status"
)


class SqliteStore(StoreBackend):
    def __init__(self, path: str, durability: str = DEFAULT_DURABILITY) -> None:
        self.path = path
        self.where = f"database {path}"
        self.durability = durability
        self.db: aiosqlite.Connection | None = None
        self.identity: sqlite_file.FileIdentity | None = None
        self.lock = sqlite_file.FileLock(path)
        self._wal_left = False  # close() left the write-ahead log (``left_behind``)
        self.inline_ops = INLINE_COMMIT_OPS if durability == "normal" else -1
        self.checkpoints = 0
        self._commits_since_checkpoint = 0
        self._ops_since_checkpoint = 0

    async def open(self) -> None:
        if not hasattr(aiosqlite.Connection, "_execute"):
            raise CorralError(
                f"aiosqlite {aiosqlite.__version__} lacks Connection._execute, which the group "
                "commit uses; install aiosqlite>=0.17,<0.23"
            )
        try:
            warning, upgraded_from = await self._open_file()
        except sqlite_file.StoreLocked:
            # Two schedulers that reach the file in the same instant can each take the read
            # lock the other's write lock waits on, and refuse each other. One more try
            # after a random pause lets one of them start; a scheduler that really holds
            # the file refuses the second try as well.
            await retry_pause()
            warning, upgraded_from = await self._open_file()
        if warning:  # only now: a scheduler holding the file may have been mid-write
            log.warning("%s", warning)
        if upgraded_from is not None:
            log.warning(
                "upgraded database %s from schema %d to %d",
                self.path,
                upgraded_from,
                SCHEMA_VERSION,
            )
        self.identity = sqlite_file.FileIdentity(self.path)

    async def _open_file(self) -> tuple[str | None, int | None]:
        """Open, check, lock and upgrade the file: (a WAL warning, the version upgraded
        from); closes what it opened on any failure."""
        # Before SQLite reads the WAL (it would drop a damaged one without a word).
        warning = sqlite_file.check_wal(self.path)  # 32 bytes and a stat: no thread needed
        sqlite_file.check_wal_owner(self.path)  # frame headers only: no thread needed either
        self.lock.acquire()  # before SQLite reads a byte: one scheduler per file
        try:
            self.db = await sqlite_file.connect(self.path)
        except BaseException:
            self.lock.release()
            raise
        try:
            pragmas = connection_pragmas(self.durability)
            for pragma in pragmas[: len(SESSION_PRAGMAS)]:
                await self.db.execute(pragma)
            # Before anything is written (WAL mode, the id), a file corral must not use
            # (damaged, another program's, a newer corral's) is refused as it was found;
            # under SQLite's write lock, so a reader cannot see a half-checked file change.
            await self.db.execute("BEGIN EXCLUSIVE")
            await in_db_thread(self.db, sqlite_file.quick_check, self.path)
            await in_db_thread(self.db, refuse_foreign, self.path)
            await self.db.execute("COMMIT")
            for pragma in pragmas[len(SESSION_PRAGMAS) :]:
                await self.db.execute(pragma)
            await in_db_thread(self.db, sqlite_file.give_database_id)
            upgraded_from = await in_db_thread(self.db, migrate, self.path)
        except BaseException as exc:
            await sqlite_file.close_quietly(self.db)
            self.db = None
            self.lock.release()
            if isinstance(exc, sqlite3.Error | OSError):
                raise sqlite_file.translate(exc, self.path, "open") from None
            raise
        return warning, upgraded_from

    async def close(self) -> None:
        db, self.db = self.db, None
        await sqlite_file.close_quietly(db)
        self.lock.release()  # after SQLite let go of the file (see FileLock)
        # Closing folds the log into the file and removes it; a full disk (say) kept it.
        self._wal_left = db is not None and sqlite_file.wal_frames(self.path) > 0

    def left_behind(self) -> str | None:
        if not self._wal_left:
            return None
        return (
            f"the write-ahead log {self.path}-wal could not be folded into {self.path} (a "
            "full disk, or another process with the file open): it stays beside it and the "
            "next start replays it; keep the two files together"
        )

    async def commit(self, ops: Ops) -> None:
        db = self.db
        assert db is not None, "commit on a closed store"
        try:
            if len(ops) <= self.inline_ops:
                write_batch(db._conn, ops)  # cheaper than the thread hand-off it would cost
            else:
                await in_db_thread(db, write_batch, ops)
        except (sqlite3.Error, OSError) as exc:
            raise sqlite_file.write_error(exc, self.path) from None

    async def commit_chain(self, take: TakeWrites, report: Callable[[Committed], None]) -> None:
        """With ``durability="full"`` the chain runs in the database thread
        (``sqlite_chain``): each commit starts as the last one ends, with no hop to the
        event loop between them. ``normal`` keeps commits on the loop, small ones inline."""
        db = self.db
        if db is None or self.inline_ops >= 0:
            await super().commit_chain(take, report)
            return
        loop = asyncio.get_running_loop()

        def post(committed: Committed) -> None:
            loop.call_soon_threadsafe(report, committed)

        await in_db_thread(db, sqlite_chain.run, take, post, self)

    def reads_beside_commits(self) -> bool:
        # ``full``: the chain is one call in aiosqlite's thread, reads calls after it.
        # ``normal`` commits small batches on the loop's thread, on the same connection.
        return self.inline_ops < 0

    async def after_commit(self, n_ops: int) -> None:
        if self.checkpoint_due(n_ops):
            await self.checkpoint()

    def checkpoint_due(self, n_ops: int) -> bool:
        """Count a commit of ``n_ops``; whether the WAL should be checkpointed now."""
        self._commits_since_checkpoint += 1
        self._ops_since_checkpoint += n_ops
        return (
            self._commits_since_checkpoint >= CHECKPOINT_EVERY_COMMITS
            or self._ops_since_checkpoint >= CHECKPOINT_EVERY_OPS
        )

    def checkpointed(self) -> None:
        self.checkpoints += 1
        self._commits_since_checkpoint = self._ops_since_checkpoint = 0

    async def checkpoint(self) -> None:
        """Copy the WAL back into the database file, in the database thread."""
        assert self.db is not None
        try:
            await in_db_thread(self.db, sqlite_chain.checkpoint_wal)
        except (sqlite3.Error, OSError) as exc:
            raise sqlite_file.translate(exc, self.path, "checkpoint") from None
        self.checkpointed()

    def verify(self) -> None:
        if self.identity is not None:
            self.identity.check()

    def counters(self) -> dict[str, int]:
        return {"checkpoints": self.checkpoints}

    async def _rows(self, sql: str, params: Collection[Any] = ()) -> list[tuple[Any, ...]]:
        assert self.db is not None
        try:
            return [tuple(row) for row in await self.db.execute_fetchall(sql, tuple(params))]
        except (sqlite3.Error, OSError) as exc:
            raise sqlite_file.translate(exc, self.path, "read") from None

    async def _jobs_where(self, clause: str, params: Collection[Any] = ()) -> list[Job]:
        assert self.db is not None
        sql = f"SELECT {JOB_COLUMNS} FROM jobs {clause}"
        try:
            return await in_db_thread(self.db, read_jobs, sql, tuple(params))
        except (sqlite3.Error, OSError) as exc:
            raise sqlite_file.translate(exc, self.path, "read") from None

    # ------------------------------------------------------------------ reads

    async def recover(self) -> Recovered:
        """Raises StoreDamaged, naming the job where it can, for rows corral could not
        have written (edited by hand): the scheduler then refuses to start, one line."""
        try:
            return await self._recover()
        except UnreadableRow as exc:
            raise damaged(self.path, str(exc)) from None

    async def _recover(self) -> Recovered:
        live = await self._jobs_where(f"WHERE {_LIVE} ORDER BY id")
        counts = dict(await self._rows("SELECT status, count(*) FROM jobs GROUP BY status"))
        max_id = (await self._rows("SELECT max(id) FROM jobs"))[0][0] or 0
        newest = await self._rows(
            "SELECT max(max(created_at), coalesce(max(started_at), 0), "
            "coalesce(max(finished_at), 0)) FROM jobs"
        )
        problem = recovery_problem(counts, newest[0][0] if max_id else None)
        if problem is not None:
            raise damaged(self.path, problem)
        max_workflow = (await self._rows("SELECT max(id) FROM workflows"))[0][0] or 0
        wanted = sorted({p for job in live for p in job.depends_on} - {job.id for job in live})
        return Recovered(
            live=live,
            counts=counts,
            max_job_id=max_id,
            max_workflow_id=max_workflow,
            last_write=newest[0][0] if max_id else None,
            parents=sorted(await self.jobs(wanted), key=_job_id),
            database_id=(await self._rows(DATABASE_ID))[0][0],
        )

    async def jobs(self, ids: Collection[int]) -> list[Job]:
        found: list[Job] = []
        for chunk, marks in in_chunks(list(dict.fromkeys(ids))):
            found += await self._jobs_where(f"WHERE id IN ({marks})", chunk)
        return found

    async def ids_by_key(self, keys: Collection[str]) -> dict[str, int]:
        found: dict[str, int] = {}
        for chunk, marks in in_chunks(list(dict.fromkeys(keys))):
            rows = await self._rows(
                f"SELECT idempotency_key, id FROM jobs WHERE idempotency_key IS NOT NULL "
                f"AND idempotency_key IN ({marks})",
                chunk,
            )
            found.update(rows)
        return found

    async def list_jobs(
        self,
        *,
        status: JobState | None = None,
        queue: str | None = None,
        before: int | None = None,
        limit: int = 100,
        owner: str | None = None,
        task: str | None = None,
        key: str | None = None,
        created_after: float | None = None,
        created_before: float | None = None,
    ) -> list[Job]:
        where: list[str] = []
        params: list[Any] = []
        for clause, value in (
            ("status = ?", status),
            ("queue = ?", queue),
            ("id < ?", before),
            ("owner = ?", owner),
            ("task = ?", task),
            ("idempotency_key = ?", key),
            ("created_at >= ?", created_after),
            ("created_at < ?", created_before),
        ):
            if value is not None:
                where.append(clause)
                params.append(value)
        sql = f"WHERE {' AND '.join(where)}" if where else ""
        return await self._jobs_where(f"{sql} ORDER BY id DESC LIMIT ?", [*params, limit])

    async def job_ids(self, status: JobState) -> list[int]:
        rows = await self._rows("SELECT id FROM jobs WHERE status = ? ORDER BY id", [status])
        return [row[0] for row in rows]

    async def ended_by_minute(self, since: float) -> list[tuple[int, str, int]]:
        rows = await self._rows(ENDED_BY_MINUTE, [since])
        return [(int(m), str(s), int(n)) for m, s, n in rows]

    async def attempts(self, job_id: int) -> list[AttemptRecord]:
        rows = await self._rows(
            "SELECT job_id, token, worker, started_at, finished_at, outcome, error "
            "FROM attempts WHERE job_id = ? ORDER BY token",
            [job_id],
        )
        return [AttemptRecord(*row) for row in rows]

    async def workflow(self, workflow_id: int) -> WorkflowRecord | None:
        rows = await self._rows(
            "SELECT id, name, idempotency_key, created_at FROM workflows WHERE id = ?",
            [workflow_id],
        )
        return WorkflowRecord(*rows[0]) if rows else None

    async def workflow_by_key(self, key: str) -> WorkflowRecord | None:
        rows = await self._rows(
            "SELECT id, name, idempotency_key, created_at FROM workflows WHERE idempotency_key = ?",
            [key],
        )
        return WorkflowRecord(*rows[0]) if rows else None

    async def workflow_jobs(self, workflow_id: int) -> list[Job]:
        return await self._jobs_where("WHERE workflow_id = ? ORDER BY id", [workflow_id])

    async def children(self, parents: Collection[int]) -> list[int]:
        found: set[int] = set()
        for chunk, marks in in_chunks(list(dict.fromkeys(parents))):
            rows = await self._rows(f"SELECT child FROM edges WHERE parent IN ({marks})", chunk)
            found.update(row[0] for row in rows)
        return sorted(found)

    async def limits(self) -> list[LimitRecord]:
        rows = await self._rows(
            "SELECT name, count, period, burst, tat, declared FROM limits ORDER BY name"
        )
        # SQLite has no booleans: declared reads back as 0 or 1
        return [LimitRecord(r[0], r[1], r[2], r[3], r[4], bool(r[5])) for r in rows]

    async def schedules(self) -> list[ScheduleRecord]:
        rows = await self._rows(f"SELECT {', '.join(SCHEDULE_FIELDS)} FROM schedules ORDER BY name")
        # SQLite has no booleans: paused reads back as 0 or 1
        return [msgspec.structs.replace(ScheduleRecord(*r), paused=bool(r[-1])) for r in rows]

    async def purge(self, done_before: float, failed_before: float, limit: int) -> Purged:
        assert self.db is not None
        try:
            purged = await in_db_thread(
                self.db, sqlite_purge.purge, done_before, failed_before, limit
            )
        except (sqlite3.Error, OSError) as exc:
            raise sqlite_file.translate(exc, self.path, "purge") from None
        if purged.jobs:
            await self.after_commit(len(purged.jobs))  # it wrote: checkpoint as commits do
        return purged


async def retry_pause() -> None:
    """The pause before a refused open tries once more (see ``SqliteStore.open``): random,
    so two schedulers that collided do not collide again."""
    await asyncio.sleep(random.uniform(*LOCKED_RETRY_PAUSE_S))


def _job_id(job: Job) -> int:
    return job.id
