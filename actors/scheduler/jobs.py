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
from collections.abc import Callable, Iterable, Sequence
from operator import attrgetter
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
from actors.scheduler.job import SharedNames, job_options, kept_args, kept_kwargs
from actors.scheduler.job_recovery import Recovery
from actors.scheduler.ops import Ops
from actors.scheduler.quotas import HeldJobs
from transport import protocol as wire

_METRIC_OF = {
    SUCCEEDED: "succeeded",
    FAILED: "failed",
    CANCELLED: "cancelled",
    UPSTREAM_FAILED: "upstream_failed",
}


_status_of = attrgetter("status")


def backoff_delay(attempt: int, backoff: wire.Backoff, rand: Callable[[], float]) -> float:
    """Delay before retry number ``attempt`` (1-based): capped exponential, equal jitter."""
    ceiling = min(backoff.cap, backoff.base * backoff.factor ** min(attempt - 1, 64))
    return ceiling * (0.5 + 0.5 * rand())


class JobTable(Recovery):
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
        self.names = SharedNames()
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
        # Cancelled while RUNNING, the stop not yet confirmed: job id -> whether it holds a
        # key's slot. The slot and a no-overlap schedule's next fire wait (``stopped``).
        self.stopping: dict[int, bool] = {}
        # Leases a previous scheduler process (or leader) granted, loaded RUNNING: job id ->
        # token. Their attempts may be interrupted by the restart itself (``interrupt``).
        self.inherited: dict[int, int] = {}
        self.adopted_at: dict[int, float] = {}  # of inherited leases, when (monotonic)

    # -------------------------------------------------------------- transitions

    def move(self, job: Job, new: JobState, ops: Ops) -> None:
        """One job changes state: :meth:`move_all` of one."""
        self.move_all((job,), new, ops)

    def move_all(self, jobs: Sequence[Job], new: JobState, ops: Ops) -> None:
        """The one place jobs change state: check the table for every state they leave
        (before any of them changes), then move them all, recording each one's CAS row
        and counting once per batch, not per job."""
        if not jobs:
            return
        olds = set(map(_status_of, jobs))
        if len(olds) > 1:  # checked all, then moved by the state they leave
            for old in olds:
                check_transition(next(j.id for j in jobs if j.status is old), old, new)
            groups = [[job for job in jobs if job.status is old] for old in olds]
            for group in groups:
                self.move_all(group, new, ops)
            return
        old = jobs[0].status
        check_transition(jobs[0].id, old, new)
        in_new, updates = ops.new_ids, ops.updates
        now = time.monotonic() if new is QUEUED else 0.0
        for job in jobs:
            job.status = new
            if job.id not in in_new:  # a job created in this same write is inserted as it is
                updates.append(job.update_row(old))
            if now:
                job.queued_at = now
        count = len(jobs)
        self.counts[old] -= count
        self.counts[new] += count
        if old is RUNNING:  # a key's slot, unless held till its stop (``stopping``)
            stopping = self.stopping
            self.keys_freed += [
                j.id
                for j in jobs
                if j.options and j.options.concurrency_key and j.id not in stopping
            ]
        metric = "retried" if old is RUNNING and new is PENDING else _METRIC_OF.get(new)
        if metric is not None:
            self._count(jobs, metric)
        if self.events is not None:
            self.events += [
                ("job", j.id, new, j.queue, j.worker or "", j.token, -1.0, j.error or "")
                for j in jobs
            ]

    def _count(self, jobs: Sequence[Job], metric: str) -> None:
        """Per-queue totals: one addition when the jobs share a queue (the usual case)."""
        queue = jobs[0].queue
        if all(job.queue == queue for job in jobs):
            self.by_queue[(queue, metric)] += len(jobs)
        else:
            for job in jobs:
                self.by_queue[(job.queue, metric)] += 1

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
        return self.create_all((spec,), ops, owner, workflow_id, step)[0]

    def create_all(
        self,
        specs: Sequence[wire.JobSpec],
        ops: Ops,
        owner: str = "",
        workflow_id: int | None = None,
        step: str | None = None,
    ) -> list[Job]:
        """New jobs in PENDING, one per spec, in order (ids in a row); counted once."""
        if not specs:
            return []
        first = self.next_id
        self.next_id += len(specs)
        now = self.clock()
        jobs: list[Job] = []
        nbytes = 0
        by_key, names, table = self.by_key, self.names, self.jobs
        for job_id, spec in enumerate(specs, first):
            parents = spec.depends_on
            args, kwargs = spec.args, spec.kwargs
            job = Job(
                job_id,
                names(spec.task),
                kept_args(args),
                kept_kwargs(kwargs),
                spec.priority,
                names(spec.queue),
                tuple(parents) if parents else (),
                spec.max_retries,
                now,
                PENDING,
                owner=owner,
                options=job_options(
                    spec.idempotency_key,
                    spec.timeout,
                    spec.backoff,
                    workflow_id,
                    step,
                    spec.concurrency_key,
                    spec.max_concurrent,
                ),
            )
            if spec.delay or spec.run_at:
                ready_at = max(spec.run_at, now + spec.delay)
                if ready_at > now:
                    job.not_before = ready_at  # queued by ``defer`` once its parents are done
            if spec.idempotency_key is not None:
                by_key[spec.idempotency_key] = job_id
            if parents:
                ops.edges += [(parent, job_id) for parent in parents]
            nbytes += wire.payload_bytes(spec)
            jobs.append(job)
            table[job_id] = job  # keyed by the job's own id: no second int per job
        self.held.add(owner, len(jobs), nbytes)
        self.counts[PENDING.value] += len(jobs)
        self._count(jobs, "submitted")
        if self.events is not None:
            self.events += [("job", j.id, "PENDING", j.queue, "", 0, -1.0, "") for j in jobs]
        ops.new_jobs += jobs  # their rows are built when the write is sealed, in state then
        ops.new_ids.update(range(first, self.next_id))
        return jobs

    # --------------------------------------------------------------- assignment

    def lease(self, job_id: int, peer: bytes, worker: str, ops: Ops) -> wire.Assignment | None:
        """Compare-and-swap QUEUED -> RUNNING under a new, larger fencing token.

        Returns None when the job is no longer QUEUED (cancelled, or picked twice).
        """
        leased, _ = self.lease_all([(job_id, peer)], {peer: worker}, ops)
        return leased[0][1] if leased else None

    def lease_all(
        self,
        picks: Iterable[tuple[int, bytes]],
        names: dict[bytes, str],
        ops: Ops,
        started_at: float | None = None,
    ) -> tuple[list[tuple[bytes, wire.Assignment]], list[tuple[int, bytes]]]:
        """:meth:`lease` for each (job id, peer) pick, in one move: the assignments, and
        the picks whose job is no longer QUEUED (cancelled, or picked twice). ``names``:
        each peer's worker name ("?" if unknown). ``started_at``: their start, if not now
        (the instant they took their rate limits' tokens)."""
        jobs = self.jobs
        now = self.clock() if started_at is None else started_at
        taken: dict[int, Job] = {}
        returned: list[tuple[int, bytes]] = []
        for job_id, peer in picks:
            job = jobs.get(job_id)
            if job is None or job.status is not QUEUED or job_id in taken:
                returned.append((job_id, peer))
                continue
            taken[job_id] = job
            job.token += 1
            job.attempts += 1
            job.worker = names.get(peer, "?")
            job.peer = peer
            job.started_at = now
            job.finished_at = None
        leased = list(taken.values())
        self.move_all(leased, RUNNING, ops)
        return [(job.peer or b"", job.assignment()) for job in leased], returned

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
        self.succeed_all([(job, result)], ops)

    def succeed_all(self, done: Sequence[tuple[Job, msgspec.Raw]], ops: Ops) -> None:
        """RUNNING -> SUCCEEDED for each (job, result) (distinct jobs), in one move."""
        now = self.clock()
        for job, result in done:
            job.result = result
            job.error = None
            job.finished_at = now
        self.move_all([job for job, _ in done], SUCCEEDED, ops)

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
        reason = "left RUNNING by the previous scheduler process; no worker claimed it"
        self.interrupt(job, reason, ops)

    def interrupt(self, job: Job, reason: str, ops: Ops) -> None:
        """RUNNING -> QUEUED for an attempt a scheduler restart or failover interrupted (no
        worker claimed its lease, or the worker stopped it when no heartbeat was
        acknowledged meanwhile): recorded as "interrupted", not counted, run again."""
        now = self.clock()
        ops.attempts.append(
            (job.id, job.token, job.worker, job.started_at, now, "interrupted", reason)
        )
        self.inherited.pop(job.id, None)
        self.adopted_at.pop(job.id, None)
        self.unlease(job, ops)

    def unlease(self, job: Job, ops: Ops) -> None:
        """RUNNING -> QUEUED for a lease its worker never held (it never got the Assign, or
        dropped it as stale): the job never ran, so the attempt is not counted. The next
        lease still issues a larger token, so a late result under this one is refused."""
        job.attempts -= 1
        job.peer = None
        job.worker = None
        job.started_at = None
        self.move(job, QUEUED, ops)

    def cancel(self, job: Job, ops: Ops, stopping: bool = False) -> None:
        """PENDING/QUEUED/RUNNING -> CANCELLED; a running attempt is recorded as cancelled.
        ``stopping``: its worker is told to stop it; it stays in ``stopping`` till it has."""
        now = self.clock()
        if job.status is RUNNING:
            ops.attempts.append(
                (job.id, job.token, job.worker, job.started_at, now, "cancelled", "cancelled")
            )
            if stopping:
                self.stopping[job.id] = bool(job.options and job.options.concurrency_key)
        job.error = "cancelled"
        job.finished_at = now
        self.move(job, CANCELLED, ops)

    def stopped(self, job_ids: list[int]) -> None:
        """The handlers of these cancelled jobs no longer run: their keys' slots are free."""
        self.keys_freed += [i for i in job_ids if self.stopping.pop(i, False)]

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
        self.settle_all((job,))

    def settle_all(self, jobs: Iterable[Job]) -> None:
        """:meth:`settle` for each job; what the owners hold is counted once per owner."""
        recent = self._recent
        released: dict[str, list[int]] = {}
        for job in jobs:
            if not job.settled:
                held = released.get(job.owner)
                if held is None:
                    held = released[job.owner] = [0, 0]
                held[0] -= 1
                held[1] -= wire.payload_bytes(job)
            job.settled = True
            job.peer = None
            recent[job.id] = None
        for owner, (count, nbytes) in released.items():
            self.held.add(owner, count, nbytes)
        for _ in range(len(recent) - RECENT_FINISHED):
            old_id, _none = recent.popitem(last=False)
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
