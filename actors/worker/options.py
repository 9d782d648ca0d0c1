"""What ``@task(...)`` declared about each task (``TaskOptions``), by task name.

Apart from ``actors.worker.tasks`` (which registers tasks and makes ``Task`` objects that
submit through the client) so the client can read a task's declared defaults without
importing what imports the client back.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TaskOptions:
    """What ``@task(...)`` said about a task; None means "no opinion" (the job decides)."""

    retry_on: tuple[type[BaseException], ...] | None = None  # None: every Exception
    max_retries: int | None = None
    timeout: float | None = None
    queue: str | None = None
    priority: int | None = None
    backoff: tuple[float, float, float] | None = None  # (base, factor, cap) seconds
    concurrency_key: str | None = None  # every job of the task shares this key...
    max_concurrent: int | None = None  # ...and at most this many of them run at once
    # (count, period in seconds, burst): at most this many jobs of the task start, across
    # every worker; its workers declare it to the scheduler (``WorkerHello.limits``).
    rate_limit: tuple[int, float, int] | None = None


OPTIONS: dict[str, TaskOptions] = {}
_DEFAULT = TaskOptions()


def task_options(name: str) -> TaskOptions:
    """The options ``@task`` registered for ``name`` (defaults if it gave none)."""
    return OPTIONS.get(name, _DEFAULT)


def job_timeout(own: float | None, task: str) -> float | None:
    """A job's timeout: its own, else its task's (``@task(timeout=...)``), else none. What
    the agent stops a handler at, and a pool child's own limit (they must agree)."""
    return own or task_options(task).timeout


def declared_limits(names: Iterable[str]) -> list[tuple[str, int, float, int]]:
    """The rate limits these tasks declare, as a worker's hello tells the scheduler."""
    return [
        (name, *limit)
        for name in sorted(names)
        if (limit := OPTIONS.get(name, _DEFAULT).rate_limit) is not None
    ]
