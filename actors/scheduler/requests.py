"""Client requests about existing jobs, for the scheduler actor: cancel, re-queue (dead
letters), list, and a job's view with its attempt history (waiting is ``waits``).

Like ``workflows``, these are the scheduler's own handlers kept in a module of their own;
they run inside the scheduler actor and touch only its state. None is on the hot path.
"""

from __future__ import annotations

import msgspec

from actors.lifecycle import LIVE, JobState
from actors.scheduler import admission, owners, workflows
from actors.scheduler.core import SchedulerCore
from actors.scheduler.effects import Effects
from actors.scheduler.job import Job, raw_args, raw_kwargs, shown_worker
from actors.scheduler.messages import RevokeLease, Send
from actors.scheduler.ops import Ops
from actors.scheduler.store.actor import read
from actors.scheduler.store.base import StoreBackend
from transport import protocol as wire

_STATES = tuple(state.value for state in JobState)  # what a listing by status may name


async def cancel(sched: SchedulerCore, peer: bytes, request: wire.CancelJobs) -> None:
    jobs = owners.visible(sched, peer, await sched.find(request.job_ids))
    ops, effects = Ops(), Effects()
    statuses: list[tuple[int, str]] = []
    for job_id in request.job_ids:
        job = jobs.get(job_id)
        if job is None:
            statuses.append((job_id, "NOT_FOUND"))
            continue
        if job.status in LIVE:
            holder = job.peer if job.status is JobState.RUNNING else None
            token = job.token
            # Held by no worker yet (a restart's lease, unclaimed): its handler may still run
            # until lease + grace (ReclaimOrphans), so its key's slot waits all the same.
            sched.table.cancel(job, ops, stopping=True)
            effects.finished.append(job)
            if holder is not None:
                revoke = RevokeLease(holder, job.id, token, "cancelled", confirm=True)
                effects.revokes.append(revoke)
        statuses.append((job_id, job.status.value))
    effects.sends.append(Send(peer, wire.CancelReply(request.request_id, statuses)))
    sched.write(ops, effects)


async def requeue(sched: SchedulerCore, peer: bytes, request: wire.Requeue) -> None:
    ids = list(request.job_ids)
    if request.all_failed:
        ids += await read(sched.store, StoreBackend.job_ids, JobState.FAILED)
    jobs = await sched.find(dict.fromkeys(ids))
    ops, effects = Ops(), Effects()
    requeued: list[int] = []
    skipped: list[tuple[int, str]] = []
    for job_id in dict.fromkeys(ids):
        job = jobs.get(job_id)
        if job is None:
            skipped.append((job_id, "no such job"))
        elif job.status is not JobState.FAILED:
            skipped.append((job_id, f"is {job.status.value}, not FAILED"))
        else:
            if job.depends_on:  # its parents succeeded; their results go with it again
                parents = await sched.find(job.depends_on)
                results = [parents[p].parent_result() for p in job.depends_on]
                too_large = admission.parents_too_large(job, results)
                if too_large is not None:
                    skipped.append((job_id, f"cannot be sent to a worker: {too_large}"))
                    continue
                job.parent_results = results
            sched.table.reload(job)
            sched.table.requeue_failed(job, ops)
            effects.ready.append(job)
            requeued.append(job_id)
    if requeued:
        await workflows.revive_descendants(sched, requeued, ops, effects)
    reply = wire.RequeueReply(request.request_id, requeued, skipped)
    effects.sends.append(Send(peer, reply))
    sched.write(ops, effects)


async def list_jobs(sched: SchedulerCore, peer: bytes, request: wire.ListJobs) -> None:
    if request.status and request.status not in _STATES:
        states = ", ".join(_STATES)
        message = f"unknown status {request.status!r}; one of: {states}"
        sched.send(peer, wire.ErrorReply("invalid", message, request.request_id))
        return
    status = JobState(request.status) if request.status else None
    stored = await read(
        sched.store,
        StoreBackend.list_jobs,
        status=status,
        queue=request.queue or None,
        before=request.before,
        limit=request.limit,
        owner=owners.limited_to(sched, peer),
        task=request.task,
        key=request.key,
        created_after=request.created_after,
        created_before=request.created_before,
    )
    views = [(sched.table.jobs.get(job.id) or job).view() for job in stored]
    sched.send(peer, wire.JobList(request.request_id, views))


async def view_with_history(sched: SchedulerCore, job: Job) -> wire.JobView:
    attempts = await read(sched.store, StoreBackend.attempts, job.id)
    history = [
        wire.AttemptView(
            a.token, shown_worker(a.worker), a.started_at, a.finished_at, a.outcome, a.error
        )
        for a in attempts
    ]
    if job.status is JobState.SUCCEEDED:
        history.append(
            wire.AttemptView(
                job.token, shown_worker(job.worker), job.started_at, job.finished_at, "succeeded"
            )
        )
    elif job.status is JobState.RUNNING:
        worker = shown_worker(job.worker)
        history.append(wire.AttemptView(job.token, worker, job.started_at, None, "running"))
    size = wire.payload_bytes(job)
    shown = size <= wire.MAX_SHOWN_PAYLOAD
    return msgspec.structs.replace(
        job.view(),
        history=history,
        args=raw_args(job.args) if shown else wire.NONE_RAW,
        kwargs=raw_kwargs(job.kwargs) if shown else wire.NONE_RAW,
        payload_bytes=size,
    )
