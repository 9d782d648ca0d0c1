"""Schedules, for the scheduler actor (issue 17): adding, listing, pausing, resuming and
removing them, and firing them.

Each fire time creates exactly one job. The job is created in the same write as the
schedule's advance past that fire time (one transaction), and carries the idempotency key
"schedule:NAME:FIRE_TIME", unique in the store: a scheduler killed before the commit left
neither, and its successor (a restart, or a standby that took over) fires that time again;
one killed after it left both, and its successor fires from the next one. Fire times that
passed while no scheduler ran follow the schedule's missed policy
(``schedule_book.Schedule.plan``). There is no timer per schedule: the scheduler arms one
for the earliest fire time of any schedule or delayed job (``Scheduler._arm_retry_timer``).

A schedule's jobs belong to the key that added it (adding, pausing, resuming and removing
need the admin role when keys are on; a client key may list schedules but does not see
their jobs, which are not its own). Like ``requests``, these are the scheduler's handlers
in a module of their own, typed against ``core.SchedulerCore``.
"""

from __future__ import annotations

import logging

import msgspec

from actors import firetimes
from actors.lifecycle import LIVE
from actors.scheduler import admission, owners, submissions
from actors.scheduler.core import SchedulerCore
from actors.scheduler.effects import Effects
from actors.scheduler.messages import Send
from actors.scheduler.ops import Ops
from actors.scheduler.schedule_book import Schedule, fire_key
from transport import protocol as wire

log = logging.getLogger("corral.schedules")


async def add(sched: SchedulerCore, peer: bytes, request: wire.AddSchedule) -> None:
    spec, rid, book = request.schedule, request.request_id, sched.schedules
    why = firetimes.problem(spec, book.clock())
    if why is None:
        refusal = admission.refusal(0, spec.job)
        why = refusal.message if refusal is not None else None
    if why is not None:
        sched.send(peer, wire.ErrorReply("invalid", f"schedule {spec.name}: {why}", rid))
        return
    known = book.by_name.get(spec.name)
    if known is not None:
        if known.spec != spec:
            text = (
                f"schedule {spec.name} exists with another spec ({firetimes.describe(known.spec)}, "
                f"task {known.spec.job.task}); remove it first to replace it"
            )
            sched.send(peer, wire.ErrorReply("exists", text, rid))
            return
        views = await _views(sched, peer, [known])
        sched.send(peer, wire.ScheduleReply(rid, views, existing=True))
        return
    schedule = book.add(spec, owners.owner_of(sched, peer))
    ops, effects = Ops(), Effects()
    ops.schedules.append((schedule.name, schedule.row()))
    effects.sends.append(Send(peer, wire.ScheduleReply(rid, [schedule.view(None)])))
    sched.write(ops, effects)


async def list_schedules(sched: SchedulerCore, peer: bytes, request: wire.ListSchedules) -> None:
    book = sched.schedules
    views = await _views(sched, peer, [book.by_name[name] for name in sorted(book.by_name)])
    sched.send(peer, wire.ScheduleReply(request.request_id, views))


async def change(sched: SchedulerCore, peer: bytes, request: wire.ChangeSchedule) -> None:
    book, rid = sched.schedules, request.request_id
    schedule = book.by_name.get(request.name)
    if schedule is None:
        text = f"no schedule named {request.name!r} (`corral schedule list` shows them)"
        sched.send(peer, wire.ErrorReply("not_found", text, rid))
        return
    ops, effects = Ops(), Effects()
    match request.action:
        case "remove":
            book.remove(schedule.name)
            ops.schedules.append((schedule.name, None))
        case "pause" if not schedule.paused:
            book.pause(schedule)
            ops.schedules.append((schedule.name, schedule.row()))
        case "resume" if schedule.paused:
            book.resume(schedule)
            ops.schedules.append((schedule.name, schedule.row()))
    views = await _views(sched, peer, [schedule])
    effects.sends.append(Send(peer, wire.ScheduleReply(rid, views)))
    sched.write(ops, effects)


async def fire_due(sched: SchedulerCore) -> None:
    """Create the jobs of every fire time that has come, each schedule's in the same write
    as its advance (see the module docstring)."""
    book = sched.schedules
    now = book.clock()
    due = book.pop_due(now)
    if not due:
        return
    plans = {schedule.name: schedule.plan(now) for schedule in due}
    keys = [fire_key(name, fire) for name, (runs, _) in plans.items() for fire in runs]
    await submissions.load_keys(sched, keys)  # a fire time with a job already has it
    ops, effects = Ops(), Effects()
    for schedule in due:
        runs, skipped = plans[schedule.name]
        if skipped:
            log.info(
                "schedule %s: %d fire time(s) missed, not run (missed policy %s)",
                schedule.name,
                skipped,
                schedule.spec.missed,
            )
        schedule.skipped += skipped
        for fire in runs:
            _fire(sched, schedule, fire, ops, effects)
        schedule.next_fire = schedule.times.next_after(now)
        book.put(schedule)
        ops.schedules.append((schedule.name, schedule.row()))
    sched.write(ops, effects)


def _fire(
    sched: SchedulerCore, schedule: Schedule, fire: float, ops: Ops, effects: Effects
) -> None:
    """One fire time: its job, unless it has one already or the last one still runs."""
    table, key = sched.table, fire_key(schedule.name, fire)
    known = table.by_key.get(key)
    if known is not None:  # never expected: a fire time committed with its advance
        log.warning("schedule %s: fire time %d has job %d already", schedule.name, fire, known)
        schedule.last_fire, schedule.last_job = fire, known
        return
    known = schedule.last_job
    if schedule.spec.no_overlap and _running(sched, schedule):
        schedule.skipped += 1
        log.info("schedule %s: fire time %d skipped: job %s runs", schedule.name, fire, known)
        return
    spec = msgspec.structs.replace(schedule.spec.job, idempotency_key=key)
    job = table.create(spec, ops, owner=schedule.owner)
    submissions.place_new(sched, job, {}, ops, effects)
    schedule.last_fire, schedule.last_job = fire, job.id


def _running(sched: SchedulerCore, schedule: Schedule) -> bool:
    """The schedule's last job has not ended (every live job is in memory)."""
    last = schedule.last_job
    if last is None:
        return False
    if last in sched.table.stopping:  # cancelled, its handler not yet confirmed stopped
        return True
    job = sched.table.jobs.get(last)
    return job is not None and job.status in LIVE


async def _views(
    sched: SchedulerCore, peer: bytes, schedules: list[Schedule]
) -> list[wire.ScheduleView]:
    """What ``peer`` may see of ``schedules``: a client key does not see their jobs."""
    show = owners.limited_to(sched, peer) is None
    ids = [s.last_job for s in schedules if s.last_job is not None] if show else []
    jobs = await sched.find(ids) if ids else {}
    views: list[wire.ScheduleView] = []
    for schedule in schedules:
        job = jobs.get(schedule.last_job) if schedule.last_job is not None else None
        views.append(schedule.view(job.status.value if job is not None else None, show))
    return views
