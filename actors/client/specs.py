"""Job descriptions on the client side: ``job_spec`` (with a task's own declared defaults),
the size limits a job and a frame must respect, and splitting many jobs into frames.

Everything here runs before a byte is sent, so a job that can never be accepted is refused
locally with the size and the limit named, instead of travelling to the scheduler.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from actors.errors import RequestRefused
from actors.worker.options import task_options
from transport import protocol as wire

# Defaults of a job's fields when neither the caller nor the task's declaration sets them
# (the same as wire.JobSpec's, which the scheduler applies to frames built by hand).
DEFAULTS: dict[str, Any] = {
    "priority": 0,
    "queue": "default",
    "max_retries": 3,
    "timeout": None,
    "backoff": None,
    "concurrency_key": None,
    "max_concurrent": None,
}
# Room kept free in every Submit frame for the frame's own fields and the msgpack headers
# of each job (a few dozen bytes each): 64 KiB covers 5,000 jobs' headers with margin.
FRAME_MARGIN = 64 * 1024
# Bytes of a job's encoding besides its payload and strings (ints, headers, tags).
SPEC_OVERHEAD = 64


def task_defaults(task: str) -> dict[str, Any]:
    """The defaults a task registered in this process declares with ``@task(queue=...,
    priority=..., max_retries=..., timeout=...)``, or ``{}`` for a task registered
    elsewhere (a client usually submits by name what only the workers import)."""
    options = task_options(task)
    return {k: getattr(options, k) for k in DEFAULTS if getattr(options, k) is not None}


def job_spec(
    task: str,
    args: Sequence[Any] = (),
    kwargs: dict[str, Any] | None = None,
    *,
    priority: int | None = None,
    queue: str | None = None,
    depends_on: Iterable[int] = (),
    max_retries: int | None = None,
    idempotency_key: str | None = None,
    timeout: float | None = None,
    backoff: wire.Backoff | tuple[float, float, float] | None = None,
    delay: float | datetime.timedelta | None = None,
    run_at: float | datetime.datetime | None = None,
    concurrency_key: str | None = None,
    max_concurrent: int | None = None,
) -> wire.JobSpec:
    """Build one job description for ``submit_many``.

    ``priority`` (default 0), ``queue`` ("default"), ``max_retries`` (3) and ``timeout``
    (none) not given here take the task's own declared defaults when the task is registered
    in this process. ``backoff`` is ``(base, factor, cap)`` in seconds for this job's
    retries; by default the scheduler's (1 s, x2, 300 s). ``delay`` (seconds or a
    ``timedelta``, counted by the scheduler's clock from when it accepts the job) and
    ``run_at`` (a ``datetime``, naive meaning this machine's local time, or a Unix time)
    hold the job PENDING until then; given both, the later. ``concurrency_key`` with
    ``max_concurrent`` N: at most N jobs of the key run at once (the latest submission's N
    applies to the key); the key may also name a rate limit (``set_limit``). Raises
    RequestRefused (code ``too_large``) when the arguments could never fit in a frame."""
    given: dict[str, Any] = {
        "priority": priority,
        "queue": queue,
        "max_retries": max_retries,
        "timeout": timeout,
        "backoff": backoff,
        "concurrency_key": concurrency_key,
        "max_concurrent": max_concurrent,
    }
    if None in given.values():
        declared = task_defaults(task)
        for name, value in given.items():
            if value is None:
                given[name] = declared.get(name, DEFAULTS[name])
    backoff = given["backoff"]
    if backoff is not None and not isinstance(backoff, wire.Backoff):
        backoff = wire.Backoff(*backoff)
    spec = wire.JobSpec(
        task,
        wire.pack(list(args)),
        wire.pack(kwargs or {}),
        given["priority"],
        given["queue"],
        list(depends_on),
        given["max_retries"],
        idempotency_key,
        given["timeout"],
        backoff,
        seconds_of(delay),
        unix_time_of(run_at),
        given["concurrency_key"],
        given["max_concurrent"],
    )
    check_payload(spec)
    return spec


def seconds_of(delay: float | datetime.timedelta | None) -> float:
    if isinstance(delay, datetime.timedelta):
        return delay.total_seconds()
    return float(delay or 0.0)


def unix_time_of(when: float | datetime.datetime | None) -> float:
    if isinstance(when, datetime.datetime):
        return when.timestamp()  # a naive datetime is local time, as datetime.now() gives
    return float(when or 0.0)


def check_payload(spec: wire.JobSpec, where: str = "job") -> None:
    """Refuse a job whose arguments are larger than one job may carry."""
    size = wire.payload_bytes(spec)
    if size > wire.MAX_JOB_PAYLOAD_BYTES:
        raise RequestRefused(
            "too_large",
            f"{where} ({spec.task}): arguments of {size:,} bytes exceed the limit of "
            f"{wire.MAX_JOB_PAYLOAD_BYTES:,} bytes per job (MAX_JOB_PAYLOAD_BYTES); pass a "
            "reference to large data (a path, a URL, a key) instead of the data",
        )


def spec_bytes(spec: wire.JobSpec) -> int:
    """An upper estimate of a job's encoded size, without encoding it."""
    return (
        wire.payload_bytes(spec)
        + len(spec.task)
        + len(spec.queue)
        + len(spec.idempotency_key or "")
        + 9 * len(spec.depends_on)
        + SPEC_OVERHEAD
    )


def frames_of(specs: Sequence[wire.JobSpec], max_jobs: int) -> Iterator[list[wire.JobSpec]]:
    """``specs`` in consecutive chunks of at most ``max_jobs`` jobs, each small enough for one
    frame (MAX_FRAME_BYTES). Raises RequestRefused for a job too large for any frame."""
    budget = wire.MAX_FRAME_BYTES - FRAME_MARGIN
    chunk: list[wire.JobSpec] = []
    used = 0
    for index, spec in enumerate(specs):
        check_payload(spec, f"job #{index}")
        size = spec_bytes(spec)
        if chunk and (len(chunk) >= max_jobs or used + size > budget):
            yield chunk
            chunk, used = [], 0
        chunk.append(spec)
        used += size
    if chunk:
        yield chunk
