"""The PostgreSQL store: the scheduler's state in a PostgreSQL database, through asyncpg
(``corral scheduler --db postgresql://USER@HOST:PORT/DB``). Same contract as SQLite: a
batch of operations commits in one transaction or not at all, and the store actor replies
to the writers only after COMMIT returned (``synchronous_commit`` on).

Opening it connects (``postgres_conn``: settings, errors that name the server, the user or
the database), brings the schema up to date in one transaction (``postgres_schema``), and
warns when the server runs with ``fsync`` off. A commit is a handful of set-based
statements whatever its size (``postgres_rows``).

Several schedulers may share the database; one leads (``postgres_leader``). A store opened
with the leader's ``term`` fences every commit: its first statement checks, in the same
transaction, that the term is still the current one and unexpired, and otherwise raises
NotLeaderAnymore with nothing of the batch applied. If the connection drops, the store
reports it (StoreError) and the scheduler steps down: whatever it had not committed is
not acknowledged, and the next leader loads what it had.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import Any

import asyncpg

from actors.errors import NotLeaderAnymore, StoreInconsistent
from actors.lifecycle import JobState
from actors.runtime import in_slices
from actors.scheduler.job import Job, SharedNames
from actors.scheduler.ops import SCHEDULE_FIELDS, Ops
from actors.scheduler.store import postgres_conn as pgconn
from actors.scheduler.store import postgres_purge
from actors.scheduler.store.base import (
    AttemptRecord,
    LimitRecord,
    Purged,
    Recovered,
    ScheduleRecord,
    StoreBackend,
    UnreadableRow,
    WorkflowRecord,
    damaged,
    recovery_problem,
)
from actors.scheduler.store.postgres_leader import fence
from actors.scheduler.store.postgres_rows import job_from_record, text_in, text_out, write_batch
from actors.scheduler.store.postgres_schema import DATABASE_ID, JOB_COLUMNS, migrate

log = logging.getLogger("corral.store")

_LIVE = "status IN ('PENDING', 'QUEUED', 'RUNNING')"

# Rows a read of a whole backlog (a restart's or a takeover's) brings over and makes into
# jobs at a time: see ``PostgresStore._jobs_in_chunks``.
READ_CHUNK = 5_000


class PostgresStore(StoreBackend):
    """``name``: the scheduler's (its sessions are called so); ``term``: the leader's term
    its commits are fenced with (None: not fenced, for tests of the store alone)."""

    def __init__(self, dsn: str, *, name: str = "", term: int | None = None) -> None:
        self.dsn = dsn
        self.name = name
        self.term = term
        self.target = pgconn.Target(dsn)
        self.where = f"database {self.target.dsn}"
        self.conn: asyncpg.Connection | None = None
        self.refused_commits = 0  # fenced out: the term had passed on

    async def open(self) -> None:
        conn = await pgconn.connect(self.dsn, self.target, self.name)
        try:
            async with pgconn.translated(self.target, "upgrade"):
                upgraded = await migrate(conn, self.where)
                fsync = await conn.fetchval("SHOW fsync")
        except BaseException:
            await pgconn.close_quietly(conn)
            raise
        self.conn = conn
        if upgraded is not None:
            log.warning("upgraded %s from schema %d to %d", self.where, *upgraded)
        if fsync != "on":
            log.warning(
                "PostgreSQL at %s runs with fsync=%s: commits survive a crash of corral, not "
                "of the database's machine",
                self.target.server,
                fsync,
            )

    async def close(self) -> None:
        conn, self.conn = self.conn, None
        await pgconn.close_quietly(conn)

    async def commit(self, ops: Ops) -> None:
        conn = self.conn
        assert conn is not None, "commit on a closed store"
        if not len(ops):
            return  # nothing to make durable: two round trips saved
        try:
            await write_batch(conn, ops, self._fence if self.term is not None else None)
        except NotLeaderAnymore:
            self.refused_commits += 1
            raise
        except asyncpg.UniqueViolationError as exc:
            raise StoreInconsistent(
                f"{exc.detail or exc} (a row the scheduler thought new)"
            ) from None
        except pgconn.ERRORS as exc:
            raise pgconn.translate(exc, self.target, "write") from None

    async def _fence(self, conn: asyncpg.Connection) -> None:
        assert self.term is not None
        await fence(conn, self.term, self.where)

    def counters(self) -> dict[str, int]:
        return {"refused_commits": self.refused_commits} if self.term is not None else {}

    def verify(self) -> None:
        if self.conn is not None and self.conn.is_closed():
            raise pgconn.lost(self.target, "serving")

    async def _rows(self, sql: str, *args: Any) -> list[Any]:
        assert self.conn is not None, "read on a closed store"
        async with pgconn.translated(self.target, "read"):
            rows: list[Any] = await self.conn.fetch(sql, *args)
        return rows

    async def _jobs_where(self, clause: str, *args: Any) -> list[Job]:
        rows = await self._rows(f"SELECT {JOB_COLUMNS} FROM jobs {clause}", *args)
        jobs: list[Job] = []
        async for part in in_slices(rows):  # a leader's whole backlog: see in_slices
            jobs += [job_from_record(row) for row in part]
        return jobs

    async def _jobs_in_chunks(self, clause: str) -> list[Job]:
        """Jobs as ``_jobs_where`` gives them, read through a cursor ``READ_CHUNK`` rows at
        a time in one read-only transaction (one snapshot), for a read as large as the
        whole backlog. A plain ``fetch`` holds every row (a record of 28 values, with its
        own copy of each name) beside the jobs made of them: 130 MB more at the peak of a
        300,000-job takeover. Each chunk becomes jobs before the next one comes, and the
        jobs share one copy of each task and queue name (as ``sqlite_rows.read_jobs``)."""
        assert self.conn is not None, "read on a closed store"
        names = SharedNames()
        jobs: list[Job] = []
        conn = self.conn
        snapshot = conn.transaction(isolation="repeatable_read", readonly=True)
        async with pgconn.translated(self.target, "read"):
            await snapshot.start()
            try:
                cursor = await conn.cursor(f"SELECT {JOB_COLUMNS} FROM jobs {clause}")
                while rows := await cursor.fetch(READ_CHUNK):
                    jobs += [names.share(job_from_record(row)) for row in rows]
                await snapshot.commit()
            except BaseException:
                # No ROLLBACK: asyncpg would first wait, up to the command timeout, for the
                # server to confirm the cancel of the unfinished fetch, on a link that may
                # have gone silent (a cancelled read then ended as a StoreError a minute
                # later, a timed-out one after two timeouts). A read that fails or is
                # cancelled ends this store's session anyway.
                conn.terminate()
                raise
        return jobs

    # ------------------------------------------------------------------ reads

    async def recover(self) -> Recovered:
        """Raises StoreDamaged for rows corral could not have written (edited by hand):
        the scheduler then refuses to lead, one line."""
        try:
            return await self._recover()
        except UnreadableRow as exc:
            raise damaged(self.target.dsn, str(exc)) from None

    async def _recover(self) -> Recovered:
        live = await self._jobs_in_chunks(f"WHERE {_LIVE} ORDER BY id")
        counts = {
            r[0]: r[1]
            for r in await self._rows("SELECT status, count(*) FROM jobs GROUP BY status")
        }
        [totals] = await self._rows(
            "SELECT max(id), greatest(max(created_at), max(started_at), max(finished_at)) FROM jobs"
        )
        problem = recovery_problem(counts, totals[1] if totals[0] else None)
        if problem is not None:
            raise damaged(self.target.dsn, problem)
        [[max_workflow]] = await self._rows("SELECT max(id) FROM workflows")
        wanted = sorted({p for job in live for p in job.depends_on} - {job.id for job in live})
        return Recovered(
            live=live,
            counts=counts,
            max_job_id=totals[0] or 0,
            max_workflow_id=max_workflow or 0,
            last_write=totals[1],
            parents=await self.jobs(wanted),
            database_id=(await self._rows(DATABASE_ID))[0][0],
        )

    async def jobs(self, ids: Collection[int]) -> list[Job]:
        if not ids:
            return []
        return await self._jobs_where("WHERE id = ANY($1::bigint[])", list(set(ids)))

    async def ids_by_key(self, keys: Collection[str]) -> dict[str, int]:
        if not keys:
            return {}
        rows = await self._rows(
            "SELECT idempotency_key, id FROM jobs WHERE idempotency_key = ANY($1::text[])",
            [text_in(key) for key in set(keys)],
        )
        return {text_out(key): job_id for key, job_id in rows}  # type: ignore[misc]

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
        args: list[Any] = []
        for column, value in (
            ("status = ", status),
            ("queue = ", text_in(queue)),
            ("id < ", before),
            ("owner = ", owner),
            ("task = ", text_in(task)),
            ("idempotency_key = ", text_in(key)),
            ("created_at >= ", created_after),
            ("created_at < ", created_before),
        ):
            if value is not None:
                args.append(value)
                where.append(f"{column}${len(args)}")
        sql = f"WHERE {' AND '.join(where)}" if where else ""
        return await self._jobs_where(
            f"{sql} ORDER BY id DESC LIMIT ${len(args) + 1}", *args, limit
        )

    async def job_ids(self, status: JobState) -> list[int]:
        rows = await self._rows("SELECT id FROM jobs WHERE status = $1 ORDER BY id", status)
        return [row[0] for row in rows]

    async def ended_by_minute(self, since: float) -> list[tuple[int, str, int]]:
        rows = await self._rows(
            "SELECT floor(finished_at / 60)::bigint AS minute, status, count(*) FROM jobs "
            "WHERE status IN ('SUCCEEDED', 'FAILED', 'CANCELLED', 'UPSTREAM_FAILED') "
            "AND finished_at >= $1 GROUP BY minute, status ORDER BY minute, status",
            since,
        )
        return [(int(m), str(s), int(n)) for m, s, n in rows]

    async def attempts(self, job_id: int) -> list[AttemptRecord]:
        rows = await self._rows(
            "SELECT job_id, token, worker, started_at, finished_at, outcome, error "
            "FROM attempts WHERE job_id = $1 ORDER BY token",
            job_id,
        )
        return [
            AttemptRecord(j, t, text_out(w), s, f, o, text_out(e)) for j, t, w, s, f, o, e in rows
        ]

    async def workflow(self, workflow_id: int) -> WorkflowRecord | None:
        rows = await self._rows(
            "SELECT id, name, idempotency_key, created_at FROM workflows WHERE id = $1",
            workflow_id,
        )
        return _workflow(rows[0]) if rows else None

    async def workflow_by_key(self, key: str) -> WorkflowRecord | None:
        rows = await self._rows(
            "SELECT id, name, idempotency_key, created_at FROM workflows "
            "WHERE idempotency_key = $1",
            text_in(key),
        )
        return _workflow(rows[0]) if rows else None

    async def workflow_jobs(self, workflow_id: int) -> list[Job]:
        return await self._jobs_where("WHERE workflow_id = $1 ORDER BY id", workflow_id)

    async def children(self, parents: Collection[int]) -> list[int]:
        if not parents:
            return []
        rows = await self._rows(
            "SELECT DISTINCT child FROM edges WHERE parent = ANY($1::bigint[]) ORDER BY child",
            list(set(parents)),
        )
        return [row[0] for row in rows]

    async def limits(self) -> list[LimitRecord]:
        rows = await self._rows(
            "SELECT name, count, period, burst, tat, declared FROM limits ORDER BY name"
        )
        return [LimitRecord(text_out(r[0]) or "", r[1], r[2], r[3], r[4], r[5]) for r in rows]

    async def schedules(self) -> list[ScheduleRecord]:
        rows = await self._rows(f"SELECT {', '.join(SCHEDULE_FIELDS)} FROM schedules ORDER BY name")
        return [ScheduleRecord(*row) for row in rows]

    async def purge(self, done_before: float, failed_before: float, limit: int) -> Purged:
        conn = self.conn
        assert conn is not None, "purge on a closed store"
        fenced = self._fence if self.term is not None else None
        try:
            return await postgres_purge.purge(conn, done_before, failed_before, limit, fenced)
        except NotLeaderAnymore:
            self.refused_commits += 1
            raise
        except pgconn.ERRORS as exc:
            raise pgconn.translate(exc, self.target, "purge") from None


def _workflow(row: Any) -> WorkflowRecord:
    workflow_id, name, key, created_at = row
    return WorkflowRecord(workflow_id, text_out(name), text_out(key), created_at)  # type: ignore[arg-type]
