"""Leases, for the scheduler actor: assignment, results, and every way a lease ends without
one (worker lost, lease not held, assignment unsendable, adoption across a restart).

These are the scheduler's own handlers, kept in a module of their own like ``requests``
and ``workflows``; they run inside the scheduler actor and touch only its state. Each
builds one write (``Ops``) and its ``Effects``, which act only after the commit.

Across a scheduler restart: jobs recovered RUNNING keep their lease while its worker
may still claim it. A worker's hello claims the leases it runs and the results it has
not had acknowledged; :func:`adopt` takes each back once (a repeated claim by the same
worker is accepted again, never refused), the results then commit under their tokens,
and what nobody claims within lease + grace is reclaimed (:func:`reclaim_orphans`).
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict

import msgspec

from actors.lifecycle import RUNNING
from actors.scheduler.core import SchedulerCore
from actors.scheduler.effects import Effects
from actors.scheduler.job import Job
from actors.scheduler.messages import (
    Adopted,
    LeasesEnded,
    ReturnCredit,
    Send,
    WorkerLost,
    WorkerResults,
)
from actors.scheduler.ops import Ops
from transport import protocol as wire

log = logging.getLogger("corral.scheduler")


def lease(
    sched: SchedulerCore,
    picks: list[tuple[int, bytes]],
    limit_states: list[tuple[str, float]] | None = None,
    at: float = 0.0,
) -> None:
    """Make the strategy's picks real: compare-and-swap QUEUED -> RUNNING under new tokens.
    ``limit_states``: the rate limits' buckets these picks took from, committed with them,
    so no job starts on a token a restart would give out again; ``at``: when they took
    them (0.0: now), recorded as their start."""
    ops, effects = Ops(), Effects()
    table = sched.table
    leased, unleased = table.lease_all(picks, sched.worker_names, ops, at or None)
    effects.leases = leased
    now, jobs, observe = time.monotonic(), table.jobs, sched.assign_latency.observe
    for _, assignment in leased:
        observe(now - jobs[assignment.job_id].queued_at)
    returned: defaultdict[bytes, list[int]] = defaultdict(list)
    for job_id, peer in unleased:
        returned[peer].append(job_id)
    for peer, lost in returned.items():
        sched.strategy.tell(ReturnCredit(peer, len(lost), tuple(lost)))
    if limit_states:
        ops.limit_states += limit_states
    sched.write(ops, effects)


def results(sched: SchedulerCore, message: WorkerResults) -> None:
    """Every worker's results of one dispatcher turn: one write, one ack per worker."""
    ops, effects = Ops(), Effects()
    table = sched.table
    refused_total = 0
    for peer, name, batch in message.batches:
        acked: list[int] = []
        refused: list[int] = []
        succeeded: dict[int, tuple[Job, msgspec.Raw]] = {}  # moved together, below
        for result in batch:
            job = table.holder_of(result.job_id, result.token, peer)
            if job is None or result.job_id in succeeded:  # (a result repeated: one counts)
                refused.append(result.job_id)
                continue
            acked.append(result.job_id)
            if result.ok:
                succeeded[result.job_id] = (job, result.result)
            elif result.fenced and table.interrupted(job):
                # Stopped by its worker while no scheduler acknowledged it (this one was
                # starting, or another was leader): the restart's doing, not the job's.
                text = f"{result.error or 'stopped'} (the scheduler was away: not counted)"
                table.interrupt(job, text, ops)
                effects.ready.append(job)
            else:
                # retry=False: the worker knows a retry cannot help (unknown task, bad
                # arguments, an exception the task does not retry): FAILED at once.
                table.fail_attempt(job, result.error or "failed", "error", ops, result.retry)
                effects.finished.append(job)  # kept only if it ended FAILED
        if succeeded:
            done = list(succeeded.values())
            table.succeed_all(done, ops)
            effects.finished += [job for job, _ in done]
        if refused:
            refused_total += len(refused)
            sched.warn(
                "refused %d stale result(s) from %s (e.g. job %d)", len(refused), name, refused[0]
            )
        effects.sends.append(Send(peer, wire.ResultsAck(acked, refused)))
    table.refused_results += refused_total
    sched.write(ops, effects)


def worker_lost(sched: SchedulerCore, message: WorkerLost) -> None:
    """The worker left or went silent: each of its attempts failed with the reason."""
    ops, effects = Ops(), Effects()
    error = message.reason
    for job_id in message.job_ids:
        job = sched.table.jobs.get(job_id)
        if job is None or job.status is not RUNNING or job.peer != message.peer:
            continue
        sched.table.fail_attempt(job, error, "lost", ops)
        effects.finished.append(job)
    sched.write(ops, effects)


def leases_ended(sched: SchedulerCore, message: LeasesEnded) -> None:
    """Leases of a connected worker that ended without a result (see ``LeasesEnded``)."""
    ops, effects = Ops(), Effects()
    table = sched.table
    error = message.reason
    for job_id, token in message.leases:
        job = table.holder_of(job_id, token, message.peer)
        if job is None:
            continue  # its result, a cancel or another end came first
        if message.how == "unheld":
            table.unlease(job, ops)
            effects.ready.append(job)
        else:
            retry = message.how != "fatal"
            table.fail_attempt(job, error, "lost" if retry else "error", ops, retry)
            effects.finished.append(job)
    if message.how != "unheld" and effects.finished:
        log.warning("%d job(s) ended: %s", len(effects.finished), error)
    sched.write(ops, effects)


def adopt(sched: SchedulerCore, peer: bytes, name: str, leases: list[tuple[int, int]]) -> None:
    accepted: list[tuple[int, int]] = []
    refused: list[tuple[int, int]] = []
    for job_id, token in leases:
        adopted = sched.table.adopt(job_id, token, peer, name)
        (accepted if adopted else refused).append((job_id, token))
    timeouts = [
        (job_id, timeout)
        for job_id, _ in accepted
        if (timeout := sched.table.jobs[job_id].timeout) is not None
    ]
    if accepted:
        log.info("worker %s kept %d running job(s) across the reconnect", name, len(accepted))
    sched.dispatcher.tell(Adopted(peer, accepted, refused, timeouts))


def reclaim_orphans(sched: SchedulerCore) -> None:
    """Jobs left RUNNING by the previous scheduler process that no worker claimed within
    lease + grace. Their worker said hello again and did not hold them (it dropped them
    unstarted, or fenced itself while no scheduler answered): the restart's doing, run
    again uncounted. Their worker never came back: a lost worker, counted as one (a job
    that takes its worker and the scheduler down with it must not loop forever)."""
    ops, effects = Ops(), Effects()
    table = sched.table
    # Cancelled before any worker claimed them: their workers have stopped them by now.
    table.stopped([i for i in table.stopping if i in table.inherited and i not in table.adopted_at])
    back = set(sched.worker_names.values())
    lost = 0
    for job in sched.table.orphans():
        if job.worker in back:
            sched.table.requeue_reclaimed(job, ops)
            effects.ready.append(job)
        else:
            reason = f"worker {job.worker} did not come back after the scheduler restarted"
            sched.table.fail_attempt(job, reason, "lost", ops)
            effects.finished.append(job)  # kept only if it ended FAILED
            lost += 1
    if effects.ready or lost:
        log.warning(
            "reclaimed %d job(s) left RUNNING by the previous scheduler process (%d of "
            "workers that did not come back)",
            len(effects.ready) + lost,
            lost,
        )
    sched.write(ops, effects)
