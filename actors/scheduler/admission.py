"""Admission checks of a submission that the msgspec schema cannot express: a job's
shape (``refusal``), whether any connected worker could run it (``no_worker``, for
``require_worker``), and whether it can travel with its parents' results
(``parents_too_large``). Pure functions: the scheduler's handlers call them before they
create anything.
"""

from __future__ import annotations

import msgspec

from actors.scheduler.job import Job
from transport import protocol as wire


class Refusal(msgspec.Struct, frozen=True):
    """Why one job spec in a submission was refused."""

    index: int
    code: str
    message: str


def refusal(index: int, spec: wire.JobSpec) -> Refusal | None:
    """Shape checks the msgspec schema cannot express."""
    if not wire.is_msgpack_array(spec.args):
        return Refusal(index, "invalid", "args must be a list (positional arguments)")
    if not wire.is_msgpack_map(spec.kwargs):
        return Refusal(index, "invalid", "kwargs must be a map of keyword arguments")
    if spec.max_concurrent is not None and spec.concurrency_key is None:
        return Refusal(index, "invalid", "max_concurrent needs a concurrency_key")
    if spec.depends_on and len(set(spec.depends_on)) != len(spec.depends_on):
        return Refusal(index, "invalid", "depends_on lists a job twice")
    if spec.backoff is not None and spec.backoff.cap < spec.backoff.base:
        base, cap = spec.backoff.base, spec.backoff.cap
        return Refusal(index, "invalid", f"backoff cap ({cap:g}) must be at least base ({base:g})")
    size = wire.payload_bytes(spec)
    if size > wire.MAX_JOB_PAYLOAD_BYTES:
        # It could never be sent to a worker: refuse it now, not strand it RUNNING.
        return Refusal(
            index,
            "too_large",
            f"args and kwargs take {size} bytes; a job may take at most "
            f"{wire.MAX_JOB_PAYLOAD_BYTES} (pass large data by reference, e.g. a path)",
        )
    return None


def no_worker(specs: list[wire.JobSpec], available: set[str]) -> str | None:
    """Why a job cannot run on any connected worker: none taking jobs has its task
    (``available``: the tasks of those that do). For ``Submit.require_worker``."""
    for index, spec in enumerate(specs):
        if spec.task not in available:
            shown = ", ".join(sorted(available)[:20]) or "none"
            more = f" and {len(available) - 20} more" if len(available) > 20 else ""
            return (
                f"job #{index}: no connected worker has task {spec.task!r} "
                f"(connected workers have: {shown}{more}); start a worker with the "
                f"module that defines it, or submit without require_worker to let it wait"
            )
    return None


def parents_too_large(job: Job, parents: list[wire.ParentResult]) -> str | None:
    """Why ``job`` cannot be sent with its parents' results (together they exceed what
    one Assign frame can carry), or None when it can."""
    size = wire.payload_bytes(job) + sum(len(p.result) for p in parents)
    if size <= wire.MAX_JOB_PAYLOAD_BYTES:
        return None
    return (
        f"its arguments and its parents' results take {size} bytes, more than the "
        f"{wire.MAX_JOB_PAYLOAD_BYTES} one assignment can carry: return smaller results "
        f"from the parent jobs (e.g. a path or a key instead of the data)"
    )
