"""Whose jobs a peer may see (issue 16): a client key reads, waits for, watches and
cancels only the jobs submitted under it (``Job.owner``, its public key); a job of
another owner is answered as if it did not exist, so ids reveal nothing. Admin and worker
keys, and every peer of a scheduler without keys, see every job.
"""

from __future__ import annotations

from actors.scheduler import quotas
from actors.scheduler.core import SchedulerCore
from actors.scheduler.job import Job


def owner_of(sched: SchedulerCore, peer: bytes) -> str:
    """The owner recorded on the jobs ``peer`` submits ("": a scheduler without keys)."""
    who = sched.identity(peer)
    return who.key if who is not None else ""


def subject(sched: SchedulerCore, peer: bytes) -> bytes:
    """Whom ``peer``'s allowances count against (``actors.scheduler.quotas.subject``)."""
    return quotas.subject(sched.identity(peer), peer)


def limited_to(sched: SchedulerCore, peer: bytes) -> str | None:
    """The only owner whose jobs ``peer`` may see, or None: it sees every job."""
    who = sched.identity(peer)
    return who.key if who is not None and who.role == "client" else None


def visible(sched: SchedulerCore, peer: bytes, jobs: dict[int, Job]) -> dict[int, Job]:
    """``jobs`` without those ``peer`` may not see."""
    owner = limited_to(sched, peer)
    if owner is None:
        return jobs
    return {job_id: job for job_id, job in jobs.items() if job.owner == owner}
