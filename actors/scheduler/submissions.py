"""Submissions, for the scheduler actor: checking and creating jobs, and placing each new
job (queued, waiting on its parents through the DAG resolver, or failed at once because a
parent failed), plus what the DAG resolver decides later (release, doom).

A submission is refused whole, naming the job, when a job could never be sent to a worker
(``too_large``) or, with ``require_worker``, when no connected worker taking jobs has its
task (``no_worker``); a job whose parents' results are too large to travel with it fails
(PENDING -> FAILED) instead of being sent. Like ``requests`` and ``workflows``, these are
the scheduler's handlers in a module of their own, typed against ``core.SchedulerCore``.
"""

from __future__ import annotations

import time

from actors.lifecycle import FAILED, PENDING, QUEUED, SUCCEEDED, UPSTREAM_FAILED
from actors.scheduler import admission, owners, waits
from actors.scheduler.core import SchedulerCore
from actors.scheduler.effects import Effects
from actors.scheduler.job import Job
from actors.scheduler.messages import Send, Track
from actors.scheduler.ops import Ops
from actors.scheduler.schedule_book import RESERVED_KEY_PREFIX
from actors.scheduler.store.actor import read
from actors.scheduler.store.base import StoreBackend
from transport import protocol as wire


async def submit(sched: SchedulerCore, peer: bytes, request: wire.Submit) -> None:
    table, rid = sched.table, request.request_id
    for index, spec in enumerate(request.jobs):
        refusal = admission.refusal(index, spec)
        if refusal is not None:
            sched.send(peer, wire.ErrorReply(refusal.code, f"job #{index}: {refusal.message}", rid))
            return
        if (spec.idempotency_key or "").startswith(RESERVED_KEY_PREFIX):  # schedules' keys
            text = f"job #{index}: idempotency keys starting {RESERVED_KEY_PREFIX!r} are reserved"
            sched.send(peer, wire.ErrorReply("invalid", f"{text} for schedules' jobs", rid))
            return
    # Only the jobs it would create count: a submission repeated with its idempotency keys
    # (its reply was lost) holds nothing more than it did, and must get its ids back. Keys
    # in memory only (no store read before the check): a key of a job evicted long ago
    # counts as new, when its owner holds less anyway.
    over = quota_refusal(sched, peer, new_specs(sched, request.jobs))
    if over is None and request.wait_request_id:
        over = sched.quotas.wait_refusal(owners.subject(sched, peer), len(request.jobs))
    if over is not None:
        sched.send(peer, wire.ErrorReply("quota", over, rid, sched.quotas.retry_after))
        return
    if request.require_worker:
        refused = admission.no_worker(request.jobs, set().union(*sched.worker_tasks.values()))
        if refused is not None:
            sched.send(peer, wire.ErrorReply("no_worker", refused, rid))
            return
    await load_keys(sched, [s.idempotency_key for s in request.jobs if s.idempotency_key])
    parent_ids = {p for spec in request.jobs for p in spec.depends_on}
    parents = owners.visible(sched, peer, await sched.find(parent_ids))
    unknown = sorted(parent_ids - parents.keys())
    if unknown:
        shown = ", ".join(map(str, unknown[:10]))
        sched.send(
            peer,
            wire.ErrorReply(
                "unknown_parent", f"depends_on names job(s) that do not exist: {shown}", rid
            ),
        )
        return

    owner = owners.owner_of(sched, peer)
    taken = await keys_of_others(sched, peer, request.jobs)
    if taken:
        text = f"idempotency key {taken!r} is another client's: choose keys of your own"
        sched.send(peer, wire.ErrorReply("key_taken", text, rid))
        return
    ops, effects = Ops(), Effects()
    if not any(spec.idempotency_key for spec in request.jobs):  # all new: created together
        jobs = table.create_all(request.jobs, ops, owner)
        ids, existing = [job.id for job in jobs], [False] * len(jobs)
        place_all(sched, jobs, parents, ops, effects)
    else:
        ids, existing = [], []
        for spec in request.jobs:
            known = table.by_key.get(spec.idempotency_key) if spec.idempotency_key else None
            if known is not None:
                ids.append(known)
                existing.append(True)
                continue
            job = table.create(spec, ops, owner=owner)
            ids.append(job.id)
            existing.append(False)
            place_new(sched, job, parents, ops, effects)
    effects.sends.append(Send(peer, wire.Submitted(rid, ids, existing)))
    if request.wait_request_id:
        found = await sched.find(ids)  # an existing key's job may have ended long ago
        done = waits.register_waits(sched, peer, request.wait_request_id, found.values())
        if done is not None:
            effects.sends.append(Send(peer, done))
    sched.write(ops, effects)


def place_all(
    sched: SchedulerCore, jobs: list[Job], parents: dict[int, Job], ops: Ops, effects: Effects
) -> None:
    """``place_new`` for each job, the ready ones (no parents, no delay) queued in one move."""
    ready = [job for job in jobs if not job.depends_on and not job.not_before]
    if len(ready) < len(jobs):
        for job in jobs:
            if job.depends_on or job.not_before:
                place_new(sched, job, parents, ops, effects)
    sched.table.move_all(ready, QUEUED, ops)
    effects.ready += ready


def place_new(
    sched: SchedulerCore, job: Job, parents: dict[int, Job], ops: Ops, effects: Effects
) -> None:
    """Queue a new job, doom it (a parent already failed), or hand it to the DAG resolver."""
    waiting: list[int] = []
    for parent_id in job.depends_on:
        parent = parents[parent_id]
        if not parent.settled:
            waiting.append(parent_id)  # its Finished message is still to come
        elif parent.status is not SUCCEEDED:
            job.error = f"parent job {parent_id} ended {parent.status.value}"
            job.finished_at = job.created_at
            sched.table.move(job, UPSTREAM_FAILED, ops)
            effects.finished.append(job)
            return
    if waiting:
        # Sent now, not after commit: it must reach the resolver before the
        # Finished message of any parent that commits after this point.
        sched.dag.tell(Track(job.id, waiting))
    else:
        queue_child(sched, job, parents, ops, effects)


def queue_child(
    sched: SchedulerCore, job: Job, parents: dict[int, Job], ops: Ops, effects: Effects
) -> None:
    """All parents succeeded: queue the job, carrying their results to its handler; or
    fail it, when those results are too large to send with it to any worker."""
    if job.depends_on:
        results = [parents[p].parent_result() for p in job.depends_on]
        too_large = admission.parents_too_large(job, results)
        if too_large is not None:
            job.error = f"cannot be sent to a worker: {too_large}"
            job.finished_at = time.time()
            sched.table.move(job, FAILED, ops)
            effects.finished.append(job)
            return
        job.parent_results = results
    if sched.table.defer(job):
        return  # a delayed job: PENDING until its time (JobTable.due_retries)
    sched.table.move(job, QUEUED, ops)
    effects.ready.append(job)


def new_specs(sched: SchedulerCore, specs: list[wire.JobSpec]) -> list[wire.JobSpec]:
    """The specs of ``specs`` that would create a job: no idempotency key, or one that
    names no job in memory (and is not repeated earlier in ``specs``)."""
    by_key, seen = sched.table.by_key, set()
    fresh: list[wire.JobSpec] = []
    for spec in specs:
        key = spec.idempotency_key
        if key is not None:
            if key in by_key or key in seen:
                continue
            seen.add(key)
        fresh.append(spec)
    return fresh


def quota_refusal(sched: SchedulerCore, peer: bytes, specs: list[wire.JobSpec]) -> str | None:
    """Why ``peer`` may not submit ``specs`` now (``actors.scheduler.quotas``), or None.
    Nothing to create is never refused (not even in rate debt, or past a limit that a
    re-queue by an admin pushed it over)."""
    if not specs:
        return None
    nbytes = sum(map(wire.payload_bytes, specs))
    return sched.quotas.submit_refusal(owners.owner_of(sched, peer), len(specs), nbytes)


async def keys_of_others(sched: SchedulerCore, peer: bytes, specs: list[wire.JobSpec]) -> str:
    """An idempotency key among ``specs`` that names a job ``peer`` may not see ("" if
    none): one client's key must not hand it another client's job."""
    if owners.limited_to(sched, peer) is None:
        return ""
    by_key = sched.table.by_key
    known = {k: by_key[k] for s in specs if (k := s.idempotency_key) and k in by_key}
    if not known:
        return ""
    mine = owners.visible(sched, peer, await sched.find(known.values()))
    return next((key for key, job_id in known.items() if job_id not in mine), "")


async def load_keys(sched: SchedulerCore, keys: list[str]) -> None:
    """Make sure every known idempotency key among ``keys`` is in memory."""
    missing = [k for k in keys if k not in sched.table.by_key]
    if missing:
        sched.table.by_key.update(await read(sched.store, StoreBackend.ids_by_key, missing))


async def release(sched: SchedulerCore, job_ids: list[int]) -> None:
    ops, effects = Ops(), Effects()
    children = [sched.table.jobs.get(job_id) for job_id in job_ids]
    ready = [job for job in children if job is not None and job.status is PENDING]
    parents = await sched.find({p for job in ready for p in job.depends_on})
    for job in ready:
        queue_child(sched, job, parents, ops, effects)
    sched.write(ops, effects)


def doom(sched: SchedulerCore, doomed: list[tuple[int, str]]) -> None:
    ops, effects = Ops(), Effects()
    for job_id, cause in doomed:
        job = sched.table.jobs.get(job_id)
        if job is not None and job.status is PENDING:
            job.error = cause
            job.finished_at = time.time()
            sched.table.move(job, UPSTREAM_FAILED, ops)
            effects.finished.append(job)
    sched.write(ops, effects)
