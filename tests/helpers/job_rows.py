"""Jobs built directly, as a store reads them back, for tests that fill a store or a table
without a scheduler: the options (idempotency key, timeout, backoff, workflow, step,
concurrency key and cap) may be named like the other fields."""

from __future__ import annotations

from typing import Any

from actors.lifecycle import JobState
from actors.scheduler.job import Job, JobOptions, job_options

OPTION_FIELDS = frozenset(JobOptions.__struct_fields__)


def stored_job(
    job_id: int,
    status: JobState,
    *,
    task: str = "t",
    args: bytes = b"\x90",
    kwargs: bytes = b"\x80",
    queue: str = "q",
    depends_on: tuple[int, ...] = (),
    created_at: float = 1.0,
    **fields: Any,
) -> Job:
    """A job in ``status`` with what the test names set, options included."""
    options = {name: fields.pop(name) for name in OPTION_FIELDS & fields.keys()}
    return Job(
        job_id,
        task,
        args,
        kwargs,
        0,
        queue,
        depends_on,
        0,
        created_at,
        status,
        options=job_options(**options),
        **fields,
    )
