"""Workflows, for the scheduler actor: atomic submission of a DAG of named steps, revival of
descendants when a dead-lettered parent is re-queued, and the workflow view.

These functions run inside the scheduler actor (they are its handlers, kept in their own
module to keep each module small); they touch only the scheduler's own state. The shape
checks (cycles, duplicate or unknown steps) belong to the DAG resolver (``dag.check_workflow``),
which the scheduler consults by message before creating anything.
"""

from __future__ import annotations

import time
from collections import deque

import msgspec

from actors.lifecycle import JobState
from actors.scheduler import admission, owners, submissions
from actors.scheduler.core import SchedulerCore
from actors.scheduler.effects import Effects
from actors.scheduler.job import Job
from actors.scheduler.messages import CheckWorkflow, Send, Track, WorkflowChecked
from actors.scheduler.ops import Ops
from actors.scheduler.store.actor import read
from actors.scheduler.store.base import StoreBackend
from transport import protocol as wire


def _refuse(sched: SchedulerCore, peer: bytes, code: str, message: str, rid: int) -> None:
    sched.send(peer, wire.ErrorReply(code, message, rid))


async def submit_workflow(sched: SchedulerCore, peer: bytes, request: wire.SubmitWorkflow) -> None:
    """Check what only the scheduler can check, then ask the DAG resolver about the shape."""
    rid = request.request_id
    key = request.idempotency_key
    if key is not None:
        if key in sched.workflow_keys_in_flight:
            sched.workflow_keys_in_flight[key].append((peer, request))  # answered after the first
            return
        existing = await _workflow_by_key(sched, key)
        if existing is not None:
            workflow_id, step_ids = existing
            steps = await sched.find(step_ids.values())
            if len(owners.visible(sched, peer, steps)) < len(steps):
                text = f"idempotency key {key!r} is another client's: choose keys of your own"
                _refuse(sched, peer, "key_taken", text, rid)
                return
            sched.send(peer, wire.WorkflowSubmitted(rid, workflow_id, step_ids, existing=True))
            return
    for step in request.steps:
        refusal = admission.refusal(0, step.job)
        if refusal is not None:
            _refuse(sched, peer, refusal.code, f"step {step.name!r}: {refusal.message}", rid)
            return
        if step.job.idempotency_key is not None:
            _refuse(
                sched,
                peer,
                "invalid",
                f"step {step.name!r} has its own idempotency_key; give the workflow one instead",
                rid,
            )
            return
    external = {p for step in request.steps for p in step.job.depends_on}
    unknown = sorted(external - owners.visible(sched, peer, await sched.find(external)).keys())
    if unknown:
        shown = ", ".join(map(str, unknown[:10]))
        _refuse(
            sched,
            peer,
            "unknown_parent",
            f"depends_on names job(s) that do not exist: {shown}",
            rid,
        )
        return
    over = submissions.quota_refusal(sched, peer, [step.job for step in request.steps])
    if over is not None:
        _refuse(sched, peer, "quota", over, rid)
        return
    # Held from now, not from creation (after the resolver's answer): workflows sent at
    # once must not all pass the same check. create_workflow gives the reservation back.
    _reserve(sched, peer, request, +1)
    if key is not None:
        sched.workflow_keys_in_flight[key] = []
    sched.dag.tell(CheckWorkflow(peer, request))


async def create_workflow(sched: SchedulerCore, checked: WorkflowChecked) -> None:
    """The resolver accepted (or rejected) the shape: create every step in one transaction."""
    request, peer, rid = checked.request, checked.peer, checked.request.request_id
    deferred = sched.workflow_keys_in_flight.pop(request.idempotency_key or "", [])
    _reserve(sched, peer, request, -1)  # its steps count for themselves once created
    try:
        if checked.rejection is not None:
            _refuse(sched, peer, checked.rejection.code, checked.rejection.message, rid)
            return
        table = sched.table
        parents = await sched.find({p for step in request.steps for p in step.job.depends_on})
        ops, effects = Ops(), Effects()
        workflow_id = table.next_workflow_id
        table.next_workflow_id += 1
        ops.workflows.append((workflow_id, request.name, request.idempotency_key, time.time()))
        step_ids: dict[str, int] = {}
        for i in checked.order:
            step = request.steps[i]
            depends_on = [*step.job.depends_on, *(step_ids[name] for name in step.after)]
            spec = msgspec.structs.replace(step.job, depends_on=depends_on)
            job = table.create(spec, ops, workflow_id, step.name, owners.owner_of(sched, peer))
            step_ids[step.name] = job.id
            parents[job.id] = job  # later steps wait on it: it is not settled
            submissions.place_new(sched, job, parents, ops, effects)
        effects.sends.append(Send(peer, wire.WorkflowSubmitted(rid, workflow_id, step_ids)))
        sched.write(ops, effects)
    finally:
        for later_peer, later in deferred:  # same key: they now find this workflow
            await submit_workflow(sched, later_peer, later)


def _reserve(sched: SchedulerCore, peer: bytes, request: wire.SubmitWorkflow, sign: int) -> None:
    """Hold (+1) or give back (-1) a workflow's steps against its owner's allowance."""
    jobs = [step.job for step in request.steps]
    nbytes = sum(map(wire.payload_bytes, jobs))
    sched.table.held.add(owners.owner_of(sched, peer), sign * len(jobs), sign * nbytes)


async def _workflow_by_key(sched: SchedulerCore, key: str) -> tuple[int, dict[str, int]] | None:
    workflow = await read(sched.store, StoreBackend.workflow_by_key, key)
    if workflow is None:
        return None
    steps = await read(sched.store, StoreBackend.workflow_jobs, workflow.id)
    return workflow.id, {job.step or str(job.id): job.id for job in steps}


async def revive_descendants(
    sched: SchedulerCore, roots: list[int], ops: Ops, effects: Effects
) -> int:
    """Re-queued parents give their UPSTREAM_FAILED descendants another chance.

    Walks the edges table breadth-first from ``roots``; a descendant is revived
    (UPSTREAM_FAILED -> PENDING, tracked again by the DAG resolver) when each of its
    parents has succeeded or is live again. Cost: the edges touched."""
    live = set(roots)
    frontier = list(roots)
    revived = 0
    while frontier:
        children = await read(sched.store, StoreBackend.children, frontier)
        frontier = []
        jobs = await sched.find(dict.fromkeys(children))
        for child_id in sorted(jobs):
            job = jobs[child_id]
            if job.status is not JobState.UPSTREAM_FAILED or child_id in live:
                continue
            parents = await sched.find(job.depends_on)
            blocking = [
                p
                for p in parents.values()
                if p.status is not JobState.SUCCEEDED and p.id not in live
            ]
            if blocking:  # another parent is still failed: it stays doomed, and names it
                cause = f"upstream job {blocking[0].id} ended {blocking[0].status.value}"
                if job.error != cause:  # its text only: no state changes
                    job.error = cause
                    ops.updates.append(job.update_row(job.status))
                continue
            sched.table.reload(job)
            sched.table.revive(job, ops)
            live.add(child_id)
            frontier.append(child_id)
            revived += 1
            sched.dag.tell(Track(child_id, [p for p in job.depends_on if p in live]))
    return revived


async def workflow_view(sched: SchedulerCore, workflow_id: int) -> wire.WorkflowView | None:
    workflow = await read(sched.store, StoreBackend.workflow, workflow_id)
    if workflow is None:
        return None
    name, created_at = workflow.name, workflow.created_at
    jobs: dict[int, Job] = {}
    for stored in await read(sched.store, StoreBackend.workflow_jobs, workflow_id):
        job = sched.table.jobs.get(stored.id) or stored  # memory is newer than the store
        jobs[job.id] = job
    steps = []
    for job in _topological(jobs):
        after = [jobs[p].step or str(p) if p in jobs else f"job {p}" for p in job.depends_on]
        steps.append(
            wire.StepView(
                job.step or str(job.id),
                job.id,
                job.status.value,
                after,
                job.task,
                job.priority,
                job.attempts,
                job.error,
            )
        )
    return wire.WorkflowView(workflow_id, name, created_at, steps)


def _topological(jobs: dict[int, Job]) -> list[Job]:
    waiting = {j.id: sum(1 for p in j.depends_on if p in jobs) for j in jobs.values()}
    children: dict[int, list[int]] = {}
    for job in jobs.values():
        for parent in job.depends_on:
            children.setdefault(parent, []).append(job.id)
    ready = deque(sorted(i for i, n in waiting.items() if n == 0))
    order: list[Job] = []
    while ready:
        job_id = ready.popleft()
        order.append(jobs[job_id])
        for child in children.get(job_id, []):
            waiting[child] -= 1
            if waiting[child] == 0:
                ready.append(child)
    return order
