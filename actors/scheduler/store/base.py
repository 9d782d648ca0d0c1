"""The store interface: everything the scheduler asks of the place it keeps its state.

A backend commits batches of operations (``actors.scheduler.ops.Ops``: inserts,
compare-and-swap updates, deletes) atomically, and answers typed reads. No SQL crosses
this boundary: the SQLite backend (``sqlite``) holds every statement and row mapping of
its own, the in-memory one (``memory``) serves unit tests, and a new backend is one more
implementation of this class that passes the conformance suite (``tests/store``).

The group-commit actor (``actor.StoreActor``) sits in front of any backend: it hands the
writes that pile up to the backend's commit chain (``commit_chain``: each transaction takes
what arrived during the one before, merged into one ``commit``) and runs reads in order with
them. A backend is therefore used from one task (or its one database thread) at a time and
needs no locking of its own.

Contract of ``commit``: all of the batch or nothing. A batch applies its parts in this
order, whatever order its writers added them in: workflows, inserts, edges, updates (in
list order, so a job inserted or updated earlier in the batch is updated from that state),
attempts, deletes (a delete expects the status the batch's updates left). If an update or
delete does not find its job in the expected status, or an insert names a job id, a
workflow id or an idempotency key (of a job, or of a workflow) that exists already (in the
store or earlier in the batch), nothing of the batch is applied and ``StoreInconsistent``
is raised; the store stays usable and a later restart sees nothing of it either. Any
failure to reach durable storage raises ``StoreError`` (one clear line). A commit that
returned is durable to the backend's promise (SQLite: synchronous FULL or NORMAL, as
configured). Edges are a set (adding one twice keeps one); an attempt replaces the one
with the same (job id, token). Attempts and edges may name jobs the store does not hold.
Rate limits (``Ops.limits``, then ``Ops.limit_states``) apply after the jobs, in list
order: a set creates a limit or changes its rate and keeps its bucket's state (``tat``, 0
for a new one), None deletes it; a state update of a limit that does not exist does
nothing.

Schedules (``Ops.schedules``) are written whole or deleted by name, in list order, after
the jobs: no compare-and-swap (a leader's commits are fenced, and each fire time's job
carries a unique idempotency key, which is what refuses a second job for it).

Reads give back jobs as a committed insert and the updates after it left them: every
persisted field equal (``status`` a ``JobState``), the memory-only ones reset (``seq`` is
the id, ``settled`` False, ``peer``, ``parent_results`` None, ``queued_at`` 0).
"""

from __future__ import annotations

import abc
import time
from collections.abc import Callable, Collection
from typing import Any

import msgspec

from actors.errors import CorralError, StoreDamaged, StoreError, StoreInconsistent
from actors.lifecycle import JobState
from actors.scheduler.job import Job
from actors.scheduler.messages import Committed
from actors.scheduler.ops import Ops, merged


class AttemptRecord(msgspec.Struct, frozen=True):
    """One ended attempt of a job, as ``Ops.attempts`` records it (``ATTEMPT_FIELDS``)."""

    job_id: int
    token: int
    worker: str | None
    started_at: float | None
    finished_at: float | None
    outcome: str
    error: str | None = None


class WorkflowRecord(msgspec.Struct, frozen=True):
    """One workflow as stored (``WORKFLOW_FIELDS``)."""

    id: int
    name: str
    idempotency_key: str | None
    created_at: float


class LimitRecord(msgspec.Struct, frozen=True):
    """One rate limit as stored: ``count`` jobs per ``period`` seconds, ``burst`` at once,
    and its bucket's state (``strategies.gates.Bucket.tat``, a Unix time).
    ``declared``: a task's own (``@task(rate_limit=...)``), which an admin's replaces."""

    name: str
    count: int
    period: float
    burst: int
    tat: float = 0.0
    declared: bool = False  # declared by ``@task(rate_limit=...)``, not set by an admin


class ScheduleRecord(msgspec.Struct, frozen=True):
    """One schedule as stored (``SCHEDULE_FIELDS``); ``spec`` is its msgpack."""

    name: str
    spec: bytes
    owner: str
    created_at: float
    next_fire: float | None
    last_fire: float | None
    last_job: int | None
    skipped: int
    paused: bool


class Recovered(msgspec.Struct):
    """What a scheduler needs from the store at start-up, in one read."""

    live: list[Job]  # PENDING, QUEUED and RUNNING jobs, by id
    counts: dict[str, int]  # jobs by status (all of them)
    max_job_id: int  # 0 for an empty store
    max_workflow_id: int
    # The newest time any job records (created, started, finished): None when empty.
    last_write: float | None
    # Settled (terminal) parents of live jobs, by id: their states and results decide the
    # children. Parents that are live themselves are in ``live``; missing ones are absent.
    parents: list[Job]
    # Made when the database was created, never changed: job ids and fencing tokens mean
    # something only within one database (see ``wire.Welcome.database_id``).
    database_id: str = ""


# Every job state by the name a store keeps it under: what a row read back may say.
STATES: dict[str, JobState] = {state.value: state for state in JobState}


class UnreadableRow(CorralError):
    """A job row corral could not have written (edited by hand, or by another program):
    a value of the wrong type, a status that is no job state, dependencies that do not
    decode. Raised instead of building a job that would crash an actor later."""


def damaged(where: str, problem: str) -> StoreDamaged:
    """The one line a start-up gives for rows corral could not have written (``where``:
    the file, or the DSN without its password)."""
    return StoreDamaged(
        where,
        f"database {where} holds what corral could not have written ({problem}); "
        "correct or delete that row, or restore a backup",
    )


# The latest time ``datetime`` can show (9999-12-31 23:59:59 UTC): a job's recorded times
# past it, or not numbers at all, were not written by corral's clock.
LATEST_TIME = 253_402_300_799.0


def recovery_problem(counts: dict[str, int], last_write: Any) -> str | None:
    """What in a start-up read's totals corral could not have written: a status that is no
    job state (on any row, live or finished), or a newest time that is no time. None when
    both are sound. The live rows themselves are checked as they are made into jobs."""
    for status in counts:
        if status not in STATES:
            return f"status {status!r} (on {counts[status]} job(s)) is not a job state"
    if last_write is not None and (
        type(last_write) not in (int, float) or not 0 <= last_write <= LATEST_TIME
    ):
        return f"a job's created, started or finished time is {last_write!r}, not a time"
    return None


class Purged(msgspec.Struct, frozen=True):
    """What one ``StoreBackend.purge`` deleted: each job as (id, status, idempotency key),
    so the scheduler forgets it and its key, and how many workflow records went with them."""

    jobs: list[tuple[int, str, str | None]]
    workflows: int = 0


# Children that keep their parents: jobs that may still run (live ones, and FAILED and
# UPSTREAM_FAILED ones, which a re-queue runs again), and which then need their parents'
# results. A SUCCEEDED or CANCELLED child never runs again: it keeps nothing.
MAY_RUN_AGAIN = ("PENDING", "QUEUED", "RUNNING", "FAILED", "UPSTREAM_FAILED")
# What retention deletes, and after which of its two periods.
PURGED_AFTER_DONE = ("SUCCEEDED", "CANCELLED", "UPSTREAM_FAILED")
PURGED_AFTER_FAILED = ("FAILED",)

# What a commit chain takes for each transaction (``write_queue.WriteQueue.take``): the
# writes to commit and the reads to answer after them.
TakeWrites = Callable[[], tuple[list[Any], list[Any]]]


def next_transaction(
    take: TakeWrites, report: Callable[[Committed], None]
) -> tuple[list[Any], list[Any], Ops] | None:
    """A commit chain's next transaction: its writes, its reads and the writes' batch; None
    when no write waits (the chain ends; reads taken alone are reported, to be answered)."""
    writes, reads = take()
    if not writes:
        if reads:
            report(Committed([], reads, 0, 0.0))
        return None
    return writes, reads, merged([write.ops for write in writes])


class StoreBackend(abc.ABC):
    """Where the scheduler's jobs live. Every read returns fresh ``Job`` objects the caller
    may change; the store changes only through ``commit``."""

    #: Names the storage in messages ("database /var/lib/corral.db").
    where: str

    def reads_beside_commits(self) -> bool:
        """Whether a read may run while a commit chain runs: only when the backend puts
        them in turn itself (SQLite's chain and reads both in its database thread). Else
        the store answers a commit's reads before it starts the next chain: one connection
        (PostgreSQL's, SQLite's with commits on the loop) cannot serve both at once."""
        return False

    @abc.abstractmethod
    async def open(self) -> None:
        """Open, check, upgrade and lock the storage; raise StoreError (one line) on any
        failure, leaving nothing open."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release the storage (idempotent, never raises)."""

    @abc.abstractmethod
    async def commit(self, ops: Ops) -> None:
        """Apply the sealed batch in one transaction (see the module docstring)."""

    async def commit_chain(self, take: TakeWrites, report: Callable[[Committed], None]) -> None:
        """Commit what ``take()`` gives, one transaction after another, until it gives no
        write or gives reads (they must run after this transaction: the chain ends so they
        can); ``report`` each transaction, or the error that ends the chain. The next
        transaction starts as soon as one ends: SQLite runs the chain in its database
        thread, with no hop to the event loop between commits."""
        while (taken := next_transaction(take, report)) is not None:
            writes, reads, batch = taken
            started = time.perf_counter()
            try:
                await self.commit(batch)
            except (StoreError, StoreInconsistent) as exc:
                report(Committed(writes, reads, 0, 0.0, exc))
                return
            report(Committed(writes, reads, len(batch), time.perf_counter() - started))
            try:
                await self.after_commit(len(batch))
            except StoreError as exc:  # the commit is durable and reported: the error alone
                report(Committed([], [], 0, 0.0, exc))
                return
            if reads:
                return

    async def after_commit(self, n_ops: int) -> None:  # noqa: B027 (an optional hook)
        """Housekeeping after a commit was reported (the chain calls it before taking the
        next writes; SQLite's own chain checkpoints its WAL in its database thread instead,
        ``sqlite_chain``); ``n_ops`` is the size of that commit."""

    def verify(self) -> None:  # noqa: B027 (an optional hook)
        """Raise StoreError if commits no longer reach durable storage (SQLite: the file
        was deleted or replaced under the scheduler). Cheap; the actor calls it about once
        a second while commits flow, and while idle."""

    def counters(self) -> dict[str, int]:
        """Backend-specific counters for the metrics (e.g. ``checkpoints``)."""
        return {}

    def left_behind(self) -> str | None:
        """After ``close``: what a clean stop could not tidy and the operator should know
        (SQLite: its write-ahead log left beside the file), or None."""
        return None

    # ------------------------------------------------------------------ reads

    @abc.abstractmethod
    async def recover(self) -> Recovered:
        """Everything a starting scheduler loads (see ``Recovered``)."""

    @abc.abstractmethod
    async def jobs(self, ids: Collection[int]) -> list[Job]:
        """The jobs with these ids that exist, each once (ids may repeat), in any order."""

    @abc.abstractmethod
    async def ids_by_key(self, keys: Collection[str]) -> dict[str, int]:
        """Job ids by idempotency key, for the keys that name a job."""

    @abc.abstractmethod
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
        """Newest first (by id): the jobs matching every filter given (``owner``: the
        submitter's key; ``key``: the idempotency key; ``created_after`` <= created_at <
        ``created_before``), with an id below ``before`` when given (keyset paging), at
        most ``limit`` (>= 0; 0 gives none). Never an OFFSET: a page below ``before``
        walks the id index from there, so a deep page costs what the first one does."""

    @abc.abstractmethod
    async def job_ids(self, status: JobState) -> list[int]:
        """Every job id in this status, ascending (e.g. all dead letters)."""

    @abc.abstractmethod
    async def attempts(self, job_id: int) -> list[AttemptRecord]:
        """The ended attempts of a job, by token."""

    @abc.abstractmethod
    async def workflow(self, workflow_id: int) -> WorkflowRecord | None: ...

    @abc.abstractmethod
    async def workflow_by_key(self, key: str) -> WorkflowRecord | None: ...

    @abc.abstractmethod
    async def workflow_jobs(self, workflow_id: int) -> list[Job]:
        """The steps of a workflow, by id."""

    @abc.abstractmethod
    async def children(self, parents: Collection[int]) -> list[int]:
        """Ids of the jobs that depend on any of ``parents`` (each once, ascending)."""

    @abc.abstractmethod
    async def ended_by_minute(self, since: float) -> list[tuple[int, str, int]]:
        """Jobs that ended (SUCCEEDED, FAILED, CANCELLED, UPSTREAM_FAILED) at or after
        ``since`` and are still stored: (minute, status, count) where ``minute`` is
        ``int(finished_at // 60)``, by minute then status (the dashboard's throughput chart,
        read through the ``jobs_finished`` index)."""

    @abc.abstractmethod
    async def limits(self) -> list[LimitRecord]:
        """Every rate limit, by name."""

    @abc.abstractmethod
    async def schedules(self) -> list[ScheduleRecord]:
        """Every schedule, by name."""

    # ------------------------------------------------------------- retention

    @abc.abstractmethod
    async def purge(self, done_before: float, failed_before: float, limit: int) -> Purged:
        """Delete, in one transaction, up to ``limit`` finished jobs, oldest finish first:
        SUCCEEDED, CANCELLED and UPSTREAM_FAILED ones finished before ``done_before``,
        FAILED ones before ``failed_before``; with them their attempts, their edges (both
        ways) and the workflows left without a step. Never deleted: a parent of a job that
        may run again (``MAY_RUN_AGAIN``: it needs the parent's result), and the newest job
        and the newest workflow (their ids seed the next ones at start-up: an id is never
        given twice). A time of 0 or less deletes nothing of that kind."""
