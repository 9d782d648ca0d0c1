"""The scheduler actor: the brain. Owns the job table and every state transition.

It validates submissions, applies transitions through ``JobTable`` (one
lifecycle table), hands the resulting compare-and-swap rows to the store, and
acts on them only after the store says they are committed: clients are
acknowledged, ready jobs go to the strategy, leases go to the dispatcher,
waiters hear outcomes, and the DAG resolver learns of finished parents. A
failure between transition and commit therefore never leaks an
acknowledgement or an assignment that SQLite does not have.

Its handlers live in modules by concept: ``submissions`` (new jobs, and what the DAG
resolver releases or dooms), ``leases`` (assignment, results, leases that end without
one, adoption across restarts), ``requests`` (wait, cancel, re-queue, list),
``workflows``, ``schedules``. This module routes messages to them and carries out what
each commit makes true (replies, leases, ready jobs, outcomes, events), and keeps the one
timer (retries, delayed jobs, fire times).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from actors.errors import StoreDamaged
from actors.lifecycle import (
    QUEUED,
    SUCCEEDED,
    TERMINAL,
)
from actors.metrics import Histogram
from actors.runtime import Actor
from actors.scheduler import (
    leases,
    limits,
    owners,
    requests,
    schedules,
    submissions,
    waits,
    workflows,
)
from actors.scheduler.core import Waiters
from actors.scheduler.effects import Effects
from actors.scheduler.jobs import Job, JobTable
from actors.scheduler.messages import (
    Adopt,
    DeclaredLimits,
    Doom,
    Enqueue,
    Finished,
    FromClient,
    KeysFreed,
    Leased,
    LeasesEnded,
    Picked,
    Publish,
    PurgeTick,
    ReadyJob,
    ReclaimOrphans,
    Release,
    Send,
    StatusPart,
    StopsConfirmed,
    SubscriberCount,
    SubscriptionRequest,
    Tick,
    WorkerLost,
    WorkerNames,
    WorkerResults,
    WorkflowChecked,
    Write,
    Written,
)
from actors.scheduler.ops import Ops
from actors.scheduler.quotas import Quotas, limits_of
from actors.scheduler.ratelog import RateLimitedLog
from actors.scheduler.retention import PURGE_BATCH, SWEEP_MIN_S, Retention
from actors.scheduler.schedule_book import ScheduleBook
from actors.scheduler.store.actor import read
from actors.scheduler.store.base import StoreBackend, UnreadableRow
from actors.scheduler.throughput import Throughput
from transport import Identity
from transport import protocol as wire

log = logging.getLogger("corral.scheduler")

# Requests that only read: one that meets an unreadable row fails alone (``_unreadable``).
_VIEWS = (wire.GetJob, wire.ListJobs, wire.GetWorkflow, wire.ListSchedules)


class Scheduler(Actor):
    def __init__(self, table: JobTable) -> None:
        super().__init__("scheduler")
        self.table = table
        # job id -> (peer, request id) pairs: a 1-tuple (the GC never has to scan it), a
        # list once a second waiter comes (appending to a tuple would be quadratic)
        self.waiters: dict[int, Waiters] = {}
        self.worker_names: dict[bytes, str] = {}
        # The tasks of each worker that takes new jobs now (Submit.require_worker).
        self.worker_tasks: dict[bytes, frozenset[str]] = {}
        self.warn = RateLimitedLog(log)
        # workflow idempotency keys being created; later submissions wait for the first
        self.workflow_keys_in_flight: dict[str, list[tuple[bytes, wire.SubmitWorkflow]]] = {}
        self.throughput = Throughput()
        self.quotas = Quotas(limits_of(table.config), table.held)
        self.assign_latency = Histogram()
        self.schedules = ScheduleBook(table.clock)  # fired by the same one timer
        self._retry_timer: asyncio.TimerHandle | None = None
        self._retry_at: float | None = None
        self.limits: dict[str, wire.LimitView] = {}  # rate limits by name (actors...limits)
        self.retention = Retention(table.config)
        # Who leads and who stands by, for the status (set by the brain on PostgreSQL).
        self.cluster: Callable[[], wire.ClusterView | None] = lambda: None
        # Who a peer is, as the transport proved it (the brain sets the transport's).
        self.identity: Callable[[bytes], Identity | None] = lambda peer: None
        self.security = ""  # what the status says of it (wire.StatusView.security)
        self.gateway: Actor
        self.store: Actor
        self.strategy: Actor
        self.dispatcher: Actor
        self.dag: Actor
        self.events: Actor

    def connect(
        self, *, gateway: Actor, store: Actor, strategy: Actor, dispatcher: Actor, dag: Actor
    ) -> None:
        self.gateway, self.store, self.strategy = gateway, store, strategy
        self.dispatcher, self.dag = dispatcher, dag

    async def on_start(self) -> None:
        self._arm_retry_timer()
        self.retention.arm(self.tell, SWEEP_MIN_S)  # at once: a restart may find a backlog
        if self.table.orphans():
            # Jobs that were RUNNING when the previous process died. Their workers may
            # still run them and reconnect to claim them (Adopt); whatever is unclaimed
            # after lease + grace has surely been stopped by its self-fencing worker.
            config = self.table.config
            asyncio.get_running_loop().call_later(
                config.lease + config.lease_grace, self.tell, ReclaimOrphans()
            )

    # ------------------------------------------------------------------ routing

    async def handle(self, message: Any) -> None:
        try:
            await self._route(message)
        except UnreadableRow as exc:  # a row edited by hand, read while handling it
            await self._unreadable(message, exc)

    async def _unreadable(self, message: Any, exc: UnreadableRow) -> None:
        """A view that read such a row fails alone (it changed nothing). Anything else may
        have changed memory before its read failed: the scheduler stops, one line, and
        acknowledges nothing more, as for a damaged file at start-up."""
        request = message.message if isinstance(message, FromClient) else None
        if isinstance(request, _VIEWS):
            log.warning("a request read a job row corral cannot read: %s", exc)
            text = f"the database holds a row corral cannot read ({exc})"
            self.send(message.peer, wire.ErrorReply("unreadable", text, request.request_id))
            return
        text = f"the database holds what corral could not have written ({exc}); stopping"
        if self.system is None:
            raise StoreDamaged("", text) from exc
        self.system.fail(StoreDamaged("", f"{text}: correct or delete that row"))
        await asyncio.Event().wait()  # parked until the system cancels every actor

    async def _route(self, message: Any) -> None:
        match message:
            case Written(tags=committed):
                self._after_commit(committed)
            case Picked(picks=picks, limits=states, at=at):
                leases.lease(self, picks, states, at)
            case DeclaredLimits(limits=declared):
                limits.keep_declared(self, declared)
            case WorkerResults():
                leases.results(self, message)
            case FromClient(peer=peer, message=request):
                await self._client(peer, request)
            case Release(job_ids=ids):
                await submissions.release(self, ids)
            case WorkflowChecked():
                await workflows.create_workflow(self, message)
            case Doom(jobs=doomed):
                submissions.doom(self, doomed)
            case WorkerLost():
                leases.worker_lost(self, message)
            case LeasesEnded():
                leases.leases_ended(self, message)
            case WorkerNames(peer=peer, name=name, tasks=tasks, available=available):
                self.worker_names[peer] = name
                if available:
                    self.worker_tasks[peer] = tasks
                else:
                    self.worker_tasks.pop(peer, None)
            case SubscriberCount(count=count):
                if count and self.table.events is None:
                    self.table.events = []
                elif not count:
                    self.table.events = None
            case Tick():
                self._retry_due()
                await schedules.fire_due(self)
            case PurgeTick():
                await self._purge()
            case Adopt(peer=peer, name=name, leases=claims):
                leases.adopt(self, peer, name, claims)
            case ReclaimOrphans():
                leases.reclaim_orphans(self)
            case StopsConfirmed(job_ids=ids):
                self.table.stopped(ids)
                self._free_keys()
            case _:
                raise TypeError(f"scheduler got an unexpected message: {message!r}")

    async def _client(self, peer: bytes, request: Any) -> None:
        match request:
            case wire.Submit():
                await submissions.submit(self, peer, request)
            case wire.Wait():
                await waits.wait(self, peer, request)
            case wire.GetJob(request_id=rid, job_id=job_id):
                found = owners.visible(self, peer, await self.find([job_id])).get(job_id)
                view = await requests.view_with_history(self, found) if found else None
                self.send(peer, wire.JobReply(rid, view))
            case wire.GetStatus(request_id=rid):
                fields = self._status_fields()
                # A client key sees the workers, not which jobs (others') they run.
                fields["running_hidden"] = owners.limited_to(self, peer) is not None
                self.strategy.tell(StatusPart(peer, rid, fields))
            case wire.CancelJobs():
                await requests.cancel(self, peer, request)
            case wire.Requeue():
                await requests.requeue(self, peer, request)
            case wire.ListJobs():
                await requests.list_jobs(self, peer, request)
            case wire.SubmitWorkflow():
                await workflows.submit_workflow(self, peer, request)
            case wire.Subscribe(request_id=rid, job_id=job_id):  # a client key's: its own job?
                if job_id is not None and owners.visible(self, peer, await self.find([job_id])):
                    if self.table.events is None:  # as SubscriberCount(1) does
                        self.table.events = []
                    self.events.tell(SubscriptionRequest(peer, request))
                else:
                    text = f"no such job: {job_id}" if job_id else "a client key watches one job"
                    self.send(peer, wire.ErrorReply("not_found", text, rid))
            case wire.SetLimit() | wire.RemoveLimit() | wire.ListLimits():
                limits.handle(self, peer, request)
            case wire.AddSchedule():
                await schedules.add(self, peer, request)
            case wire.ListSchedules():
                await schedules.list_schedules(self, peer, request)
            case wire.ChangeSchedule():
                await schedules.change(self, peer, request)
            case wire.GetWorkflow(request_id=rid, workflow_id=workflow_id):
                workflow = await workflows.workflow_view(self, workflow_id)
                if workflow is not None and owners.limited_to(self, peer) is not None:
                    steps = await self.find([s.job_id for s in workflow.steps])
                    if len(owners.visible(self, peer, steps)) < len(steps):
                        workflow = None  # another client's: as if it did not exist
                self.send(peer, wire.WorkflowReply(rid, workflow))

    def send(self, peer: bytes, message: wire.Message) -> None:
        self.gateway.tell(Send(peer, message))

    def _status_fields(self) -> dict[str, Any]:
        succeeded, ended = self.throughput.last_minute()
        counts = self.table.counts_snapshot()
        return {
            "jobs": counts,
            "counters": {"refused_results": self.table.refused_results},
            "completed_last_minute": ended,
            "throughput_per_s": round(succeeded / 60.0, 2),
            "dead_letters": counts.get("FAILED", 0),
            "cluster": self.cluster(),
            "security": self.security,
        }

    def metrics(self) -> dict[str, Any]:
        return {
            "jobs": self.table.counts_snapshot(),
            "by_queue": dict(self.table.by_queue),
            "assign_latency": self.assign_latency.snapshot(),
            "refused_results": self.table.refused_results,
            **self.quotas.metrics(),
            **self.retention.metrics(),
        }

    def _free_keys(self) -> None:
        """Tell the strategy the concurrency-key slots freed since it was last told."""
        if self.table.keys_freed:
            self.strategy.tell(KeysFreed(self.table.keys_freed))
            self.table.keys_freed = []

    def write(self, ops: Ops, effects: Effects) -> None:
        effects.events = self.table.take_events()
        self._free_keys()  # before any ready job: a freed slot may be its
        if effects.ready:
            # Ready jobs go to the strategy now, not after this commit: the store commits
            # in order, so a lease on one of them commits after (or with) this write, and
            # nothing leaves for a worker before the lease commits. Saves a commit's wait.
            self._enqueue(effects.ready)
            effects.ready = []
        if len(ops):
            self.store.tell(Write(ops.seal(), self, effects))
        else:
            self._after_commit([effects])

    async def find(self, ids: Any) -> dict[int, Job]:
        """Jobs by id, from memory or else (finished long ago) from the store."""
        found: dict[int, Job] = {}
        missing: list[int] = []
        for job_id in ids:
            job = self.table.jobs.get(job_id)
            if job is None:
                missing.append(job_id)
            else:
                found[job_id] = job
        if missing:
            for job in await read(self.store, StoreBackend.jobs, missing):
                job.settled = job.status in TERMINAL
                found[job.id] = job
        return found

    # -------------------------------------------------------------------- wait

    def _notify(self, finished: list[Job]) -> None:
        batches: defaultdict[tuple[bytes, int], list[wire.JobOutcome]] = defaultdict(list)
        for job in finished:
            for waiter in self.waiters.pop(job.id, ()):
                batches[waiter].append(job.outcome())
        answered: defaultdict[bytes, int] = defaultdict(int)
        for (peer, rid), outcomes in batches.items():
            self.send(peer, wire.Outcomes(rid, outcomes))
            answered[peer] += len(outcomes)
        for peer, count in answered.items():
            self.quotas.answered(owners.subject(self, peer), count)

    # ---------------------------------------------------------- after a commit

    def _after_commit(self, committed: list[Effects]) -> None:
        """Carry out the effects of one commit's writes, in their order, work first.

        Leases and revokes go to the dispatcher before any reply goes to a client, so a
        job's Assign leaves without queueing behind the acknowledgement of its submission
        (the gateway sends worker frames before client replies of the same turn)."""
        leases: list[tuple[bytes, wire.Assignment]] = []
        for effects in committed:
            if effects.revokes:
                if leases:  # keep a revoke after any lease committed before it
                    self.dispatcher.tell(Leased(leases))
                    leases = []
                for revoke in effects.revokes:
                    self.dispatcher.tell(revoke)
            leases += effects.leases
        if leases:
            self.dispatcher.tell(Leased(leases))
        finished: list[Job] = []
        events: list[tuple[Any, ...]] = []
        for effects in committed:
            for send in effects.sends:
                self.gateway.tell(send)
            if effects.ready:  # only start-up recovery writes to the store directly
                self._enqueue(effects.ready)
            finished += effects.finished
            events += effects.events
        if finished:
            # Settled here, so a job listed by two writes of this commit counts once.
            ended = list(
                {j.id: j for j in finished if not j.settled and j.status in TERMINAL}.values()
            )
            self.table.settle_all(ended)
            self._notify(ended)
            self.dag.tell(Finished([(j.id, j.status.value) for j in ended]))
            succeeded = sum(1 for j in ended if j.status is SUCCEEDED)
            self.throughput.add(succeeded, len(ended))
        if events:
            self.events.tell(Publish(events))
        self._arm_retry_timer()

    # -------------------------------------------------------------- assignment

    def _enqueue(self, jobs: list[Job]) -> None:
        now = time.monotonic()
        ready = [
            ReadyJob(j.id, j.priority, j.queue, j.id, now, False, j.task)
            if not (j.options and j.options.concurrency_key)
            else ReadyJob(
                j.id,
                j.priority,
                j.queue,
                j.id,
                now,
                False,
                j.task,
                j.options.concurrency_key,
                j.options.max_concurrent,
            )
            for j in jobs
            if j.status is QUEUED
        ]
        if ready:
            self.strategy.tell(Enqueue(ready))

    # -------------------------------------------------------- DAG and retries

    def _retry_due(self) -> None:
        self._retry_timer = self._retry_at = None
        ops, effects = Ops(), Effects()
        effects.ready = self.table.due_retries(ops)
        self.write(ops, effects)

    def _arm_retry_timer(self) -> None:
        """One timer for the earliest backoff deadline or fire time, never one per job or
        per schedule."""
        due = min(
            (t for t in (self.table.next_retry_at(), self.schedules.next_at()) if t is not None),
            default=None,
        )
        if due is None or (self._retry_at is not None and self._retry_at <= due):
            return
        if self._retry_timer is not None:
            self._retry_timer.cancel()
        self._retry_at = due
        delay = max(0.0, due - time.time())
        self._retry_timer = asyncio.get_running_loop().call_later(delay, self.tell, Tick(due))

    async def _purge(self) -> None:
        """One retention batch (actors.scheduler.retention), awaited: no other handler
        runs meanwhile, so none holds a job read from the store that the batch deletes."""
        started = time.perf_counter()
        cutoffs = self.retention.cutoffs()
        purged = await read(self.store, StoreBackend.purge, *cutoffs, PURGE_BATCH)
        self.retention.forget(self.table, purged)
        if purged.jobs:
            log.debug("retention: deleted %d jobs", len(purged.jobs))
        took = time.perf_counter() - started
        self.retention.arm(self.tell, self.retention.next_delay(purged, took))
