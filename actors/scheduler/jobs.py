"""The job table: the scheduler's in-memory state machine, with no I/O and no awaits.

Owns every live job (PENDING, QUEUED, RUNNING; each an ``actors.scheduler.job.Job``) plus a
bounded window of recently finished ones, the idempotency-key index, counts by state, and the retry
backoff heap. Every state change goes through :meth:`JobTable.move`, which
checks the lifecycle table and records the matching compare-and-swap row for
the store, so memory and SQLite change by the same rules.

The scheduler actor around it does the I/O: it persists the ``Ops`` these
methods fill, and only acts on the outcome (replies, dispatch) after commit.
"""

from __future__ import annotations

import heapq
import random
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

import msgspec

from actors.config import RECENT_FINISHED, SchedulerConfig
from actors.lifecycle import (
    CANCELLED,
    FAILED,
    LIVE,
    PENDING,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    TERMINAL,
    UPSTREAM_FAILED,
    JobState,
    check_transition,
)
from actors.scheduler.job import Job as Job  # re-exported: callers import it from here
from actors.scheduler.ops import Ops
from actors.scheduler.quotas import HeldJobs
from transport import protocol as wire

_METRIC_OF = {
    SUCCEEDED: "succeeded",
    FAILED: "failed",
    CANCELLED: "cancelled",
    UPSTREAM_FAILED: "upstream_failed",
}


def backoff_delay(attempt: int, backoff: wire.Backoff, rand: Callable[[], float]) -> float:
    """Delay before retry number ``attempt`` (1-based): capped exponential, equal jitter."""
    ceiling = min(backoff.cap, backoff.base * backoff.factor ** min(attempt - 1, 64))
    return ceiling * (0.5 + 0.5 * rand())


class JobTable:
    """The scheduler's state machine over all jobs it holds in memory."""

    def __init__(
        self,
        config: SchedulerConfig,
        clock: Callable[[], float] = time.time,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.config = config
        self.default_backoff = wire.Backoff(
            config.backoff_base, config.backoff_factor, config.backoff_cap
        )
        self.clock = clock
        self.rand = rand
        self.jobs: dict[int, Job] = {}
        self.by_key: dict[str, int] = {}
        self.counts: Counter[str] = Counter({state.value: 0 for state in JobState})
        self.next_id = 1
        self.next_workflow_id = 1
        self._recent: OrderedDict[int, None] = OrderedDict()
        # Per-queue totals for metrics, and (only while someone subscribes) the
        # transitions since the last write, published after it commits.
        self.by_queue: Counter[tuple[str, str]] = Counter()
        self.events: list[tuple[Any, ...]] | None = None
        self._retry_heap: list[tuple[float, int]] = []
        self.refused_results = 0
        self.held = HeldJobs()  # jobs in flight per owner, for actors.scheduler.quotas
        self.keys_freed: list[int] = []  # keyed jobs that left RUNNING, for the strategy

    # ------------------------------------------------------------------ recovery

    def load(self, live: Iterable[Job], counts: dict[str, int], max_id: int) -> None:
        """Rebuild memory from the store at start-up: live jobs, totals, the next id."""
        self.counts.update(counts)
        self.next_id = max_id + 1
        self.admit(live)

    def admit(self, live: Iterable[Job]) -> None:
        """Live jobs read from the store at start-up (``load`` without the totals)."""
        held = self.held
        for job in live:
            self.jobs[job.id] = job
            held.add(job.owner, 1, wire.payload_bytes(job))
            if job.idempotency_key is not None:
                self.by_key[job.idempotency_key] = job.id
            if job.status is PENDING and job.not_before > 0 and not self.may_wait_on_parents(job):
                heapq.heappush(self._retry_heap, (job.not_before, job.id))

    @staticmethod
    def may_wait_on_parents(job: Job) -> bool:
        """A PENDING job that never ran and has parents: it waits for them (the DAG
        resolver decides), however long its own delay; the others wait only for a time."""
        return bool(job.depends_on) and job.attempts == 0

    def reload(self, job: Job) -> None:
        """Bring a job read back from SQLite (finished long ago) into memory."""
        if job.id not in self.jobs:
            self.jobs[job.id] = job
            if job.idempotency_key is not None:
                self.by_key[job.idempotency_key] = job.id

    # -------------------------------------------------------------- transitions

    def move(self, job: Job, new: JobState, ops: Ops) -> None:
        """The one place a job changes state: check the table, count, record the CAS row."""
        old = job.status
        check_transition(job.id, old, new)
        job.status = new
        self.counts[old] -= 1
        self.counts[new] += 1
        if job.id not in ops.new_ids:  # a job created in this same write is inserted as it is
            ops.updates.append(job.update_row(old))
        if old is RUNNING and job.concurrency_key:
            self.keys_freed.append(job.id)
        retried = old is RUNNING and new is PENDING
        metric = "retried" if retried else _METRIC_OF.get(new)
        if metric is not None:
            self.by_queue[(job.queue, metric)] += 1
        if new is QUEUED:
            job.queued_at = time.monotonic()
        if self.events is not None:
            self.events.append(
                (
                    "job",
                    job.id,
                    new,
                    job.queue,
                    job.worker or "",
                    job.token,
                    -1.0,
                    job.error or "",
                )
            )

    def take_events(self) -> list[tuple[Any, ...]]:
        """The transitions recorded since the last call (empty when nobody subscribes)."""
        if not self.events:
            return []
        events, self.events = self.events, []
        return events

    # ----------------------------------------------------------------- submits

    def create(
        self,
        spec: wire.JobSpec,
        ops: Ops,
        workflow_id: int | None = None,
        step: str | None = None,
        owner: str = "",
    ) -> Job:
        """A new job in PENDING; the caller queues or dooms it after looking at its parents."""
        job_id = self.next_id
        self.next_id += 1
        now = self.clock()
        job = Job(
            job_id,
            spec.task,
            spec.args,
            spec.kwargs,
            spec.priority,
            spec.queue,
            tuple(spec.depends_on),
            spec.max_retries,
            spec.idempotency_key,
            spec.timeout,
            now,
            PENDING,
            backoff=spec.backoff,
            workflow_id=workflow_id,
            step=step,
            owner=owner,
            concurrency_key=spec.concurrency_key or "",
            max_concurrent=spec.max_concurrent or 0,
            seq=job_id,
        )
        if spec.delay or spec.run_at:
            ready_at = max(spec.run_at, now + spec.delay)
            if ready_at > now:
                job.not_before = ready_at  # queued by ``defer`` once its parents are done
        self.jobs[job_id] = job
        self.held.add(owner, 1, wire.payload_bytes(spec))
        self.counts[PENDING.value] += 1
        self.by_queue[(job.queue, "submitted")] += 1
        if self.events is not None:
            self.events.append(("job", job_id, "PENDING", job.queue, "", 0, -1.0, ""))
        if spec.idempotency_key is not None:
            self.by_key[spec.idempotency_key] = job_id
        ops.new_jobs.append(job)  # its row is built when the write is sealed, in its state then
        ops.new_ids.add(job_id)
        ops.edges.extend((parent, job_id) for parent in job.depends_on)
        return job

    # --------------------------------------------------------------- assignment

    def lease(self, job_id: int, peer: bytes, worker: str, ops: Ops) -> wire.Assignment | None:
        """Compare-and-swap QUEUED -> RUNNING under a new, larger fencing token.

        Returns None when the job is no longer QUEUED (cancelled, or picked twice).
        """
        job = self.jobs.get(job_id)
        if job is None or job.status is not QUEUED:
            return None
        job.token += 1
        job.attempts += 1
        job.worker = worker
        job.peer = peer
        job.started_at = self.clock()
        job.finished_at = None
        self.move(job, RUNNING, ops)
        return wire.Assignment(
            job.id,
            job.token,
            job.task,
            job.args,
            job.kwargs,
            job.attempts,
            job.idempotency_key,
            job.timeout,
            job.parent_results or [],
            job.step,
            job.workflow_id,
        )

    # ------------------------------------------------------------------ results

    def holder_of(self, job_id: int, token: int, peer: bytes) -> Job | None:
        """The job if ``peer`` holds its current lease under ``token``; else None (stale)."""
        job = self.jobs.get(job_id)
        if job is None or job.status is not RUNNING:
            return None
        if job.token != token or job.peer != peer:
            return None
        return job

    def succeed(self, job: Job, result: msgspec.Raw, ops: Ops) -> None:
        job.result = result
        job.error = None
        job.finished_at = self.clock()
        self.move(job, SUCCEEDED, ops)

    def fail_attempt(
        self, job: Job, error: str, outcome: str, ops: Ops, retry: bool = True
    ) -> None:
        """A RUNNING attempt failed: back off and retry while attempts remain, else FAILED.
        ``retry=False`` (a retry cannot help): FAILED at once, whatever attempts remain."""
        now = self.clock()
        ops.attempts.append((job.id, job.token, job.worker, job.started_at, now, outcome, error))
        job.error = error
        job.finished_at = now
        if retry and job.attempts <= job.max_retries:
            backoff = job.backoff or self.default_backoff
            job.not_before = now + backoff_delay(job.attempts, backoff, self.rand)
            self.move(job, PENDING, ops)
            heapq.heappush(self._retry_heap, (job.not_before, job.id))
        else:
            self.move(job, FAILED, ops)

    def requeue_reclaimed(self, job: Job, ops: Ops) -> None:
        """A lease taken back through no fault of the job (scheduler restart): run it again."""
        job.peer = None
        self.move(job, QUEUED, ops)

    def unlease(self, job: Job, ops: Ops) -> None:
        """RUNNING -> QUEUED for a lease its worker never held (it never got the Assign, or
        dropped it as stale): the job never ran, so the attempt is not counted. The next
        lease still issues a larger token, so a late result under this one is refused."""
        job.attempts -= 1
        job.peer = None
        job.worker = None
        job.started_at = None
        self.move(job, QUEUED, ops)

    def adopt(self, job_id: int, token: int, peer: bytes, worker: str) -> bool:
        """After a scheduler restart, a reconnecting worker still holds this lease: keep it.
        Idempotent: the same worker claiming it again (a repeated hello) is accepted again,
        also from another connection, which then holds it (a worker searching for a new
        leader may leave a hello on a connection it gives up and come back on another).
        Only the worker the lease was granted to may claim it, by name (``NAME@KEY`` with
        keys: the key it was granted to)."""
        job = self.jobs.get(job_id)
        if job is None or job.status is not RUNNING or job.token != token:
            return False
        if job.worker and job.worker != worker:
            return False
        if not job.worker and job.peer is not None and job.peer != peer:
            return False
        job.peer = peer
        job.worker = worker
        return True

    def orphans(self) -> list[Job]:
        """RUNNING jobs no connected worker holds (recovered from SQLite, not adopted)."""
        return [j for j in self.jobs.values() if j.status is RUNNING and j.peer is None]

    def cancel(self, job: Job, ops: Ops) -> None:
        """PENDING/QUEUED/RUNNING -> CANCELLED; a running attempt is recorded as cancelled."""
        now = self.clock()
        if job.status is RUNNING:
            ops.attempts.append(
                (job.id, job.token, job.worker, job.started_at, now, "cancelled", "cancelled")
            )
        job.error = "cancelled"
        job.finished_at = now
        self.move(job, CANCELLED, ops)

    def requeue_failed(self, job: Job, ops: Ops) -> None:
        """Dead-letter re-queue: FAILED -> QUEUED with a fresh allowance of attempts."""
        job.attempts = 0
        job.not_before = 0.0
        self._unsettle(job)
        job.finished_at = None
        self.move(job, QUEUED, ops)

    def revive(self, job: Job, ops: Ops) -> None:
        """UPSTREAM_FAILED -> PENDING: a re-queued ancestor gives it another chance."""
        self._unsettle(job)
        job.error = None
        job.finished_at = None
        self.move(job, PENDING, ops)

    # ----------------------------------------------------------------- backoff

    def due_retries(self, ops: Ops) -> list[Job]:
        """Move every PENDING job whose backoff has elapsed to QUEUED (one heap, no timers)."""
        now = self.clock()
        due: list[Job] = []
        heap = self._retry_heap
        while heap and heap[0][0] <= now:
            not_before, job_id = heapq.heappop(heap)
            job = self.jobs.get(job_id)
            if job is None or job.status is not PENDING or job.not_before != not_before:
                continue  # cancelled or moved on since; the heap entry is stale
            self.move(job, QUEUED, ops)
            due.append(job)
        return due

    def defer(self, job: Job) -> bool:
        """Keep a PENDING job ready to run waiting until its ``not_before`` (a delayed job):
        True if it must wait; ``due_retries`` queues it then, one timer for the earliest."""
        if job.not_before <= self.clock():
            return False
        heapq.heappush(self._retry_heap, (job.not_before, job.id))
        return True

    def next_retry_at(self) -> float | None:
        return self._retry_heap[0][0] if self._retry_heap else None

    # ---------------------------------------------------------------- eviction

    def settle(self, job: Job) -> None:
        """The job's terminal state is committed: keep it in the recent window only."""
        if not job.settled:
            self.held.add(job.owner, -1, -wire.payload_bytes(job))
        job.settled = True
        job.peer = None
        self._recent[job.id] = None
        while len(self._recent) > RECENT_FINISHED:
            old_id, _ = self._recent.popitem(last=False)
            old = self.jobs.get(old_id)
            if old is not None and old.status in TERMINAL:
                del self.jobs[old_id]
                if old.idempotency_key is not None:
                    self.by_key.pop(old.idempotency_key, None)

    def _unsettle(self, job: Job) -> None:
        """A finished job given another chance is in flight again."""
        if job.settled:
            self.held.add(job.owner, 1, wire.payload_bytes(job))
        job.settled = False

    def is_live(self, job: Job) -> bool:
        return job.status in LIVE

    def counts_snapshot(self) -> dict[str, int]:
        return dict(self.counts)
