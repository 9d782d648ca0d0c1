"""Waiting for jobs, for the scheduler actor: a client's ``Wait`` (or the wait folded into a
``Submit``) registers it as a waiter of each job; the scheduler tells waiters the outcome
after the commit that ends the job. Only registers: nothing here waits.
"""

from __future__ import annotations

from collections.abc import Iterable

from actors.scheduler import owners
from actors.scheduler.core import SchedulerCore
from actors.scheduler.job import Job
from transport import protocol as wire


async def wait(sched: SchedulerCore, peer: bytes, request: wire.Wait) -> None:
    # A job named twice is waited for once: the work per frame follows the distinct jobs.
    job_ids = list(dict.fromkeys(request.job_ids))
    jobs = owners.visible(sched, peer, await sched.find(job_ids))
    unknown = [i for i in job_ids if i not in jobs]
    if unknown:
        sched.send(
            peer,
            wire.ErrorReply(
                "not_found",
                f"no such job(s): {', '.join(map(str, unknown[:10]))}",
                request.request_id,
            ),
        )
        return
    over = sched.quotas.wait_refusal(owners.subject(sched, peer), len(job_ids))
    if over is not None:
        sched.send(peer, wire.ErrorReply("quota", over, request.request_id))
        return
    done = register_waits(sched, peer, request.request_id, jobs.values())
    if done is not None:
        sched.send(peer, done)


def register_waits(
    sched: SchedulerCore, peer: bytes, request_id: int, jobs: Iterable[Job]
) -> wire.Outcomes | None:
    """Have ``peer`` told when each job ends; the outcomes of those already ended, if any."""
    done: list[wire.JobOutcome] = []
    waiters, waiter = sched.waiters, (peer, request_id)
    named = 0
    # A wait may name 50,000 jobs: one shared key, and a 1-tuple in the usual case (tuples
    # of atoms are untracked by the cyclic GC). A second waiter turns it into a list, so
    # 30,000 waits on one job cost 30,000 appends, not a quadratic series of tuple copies.
    for job in jobs:
        named += 1
        if job.settled:
            done.append(job.outcome())
        elif (others := waiters.get(job.id)) is None:
            waiters[job.id] = (waiter,)
        elif isinstance(others, list):
            others.append(waiter)
        else:
            waiters[job.id] = [*others, waiter]
    sched.quotas.waited(owners.subject(sched, peer), named - len(done))
    return wire.Outcomes(request_id, done) if done else None
