"""A process-pool child gets its job's timeout, the job's own or else its task's, as a limit
of its own (its kernel timer: tests/e2e/test_worker_leases.py); no timeout, no limit."""

from __future__ import annotations

from typing import Any

from actors.worker import tasks
from actors.worker.runners import Runners
from actors.worker.tasks import PendingContext, task


@task(name="test_runner_timeouts.slow", timeout=7.5)
def slow() -> None:
    return None


@task(name="test_runner_timeouts.plain")
def plain() -> None:
    return None


class FakeProcesses:
    def __init__(self) -> None:
        self.timeouts: list[float | None] = []

    def start(self, *args: Any) -> str:
        self.timeouts.append(args[-1])
        return "run"


def test_the_child_gets_the_jobs_own_timeout_else_its_tasks_else_none() -> None:
    runners = Runners(dict(tasks.REGISTRY), 1, "process", [])
    fake = FakeProcesses()
    runners._processes = fake  # type: ignore[assignment]
    ctx: Any = PendingContext(lambda _: None, None)
    cases = [("slow", None), ("slow", 2.0), ("plain", None), ("plain", 3.0)]
    for short, own in cases:
        name = f"test_runner_timeouts.{short}"
        runners.start(1, name, tasks.REGISTRY[name], [], {}, ctx, lambda: 1e9, own)
    assert fake.timeouts == [7.5, 2.0, None, 3.0]
