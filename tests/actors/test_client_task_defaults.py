"""A task registered in the submitting process lends its declared defaults (queue, priority,
max_retries, timeout) to the fields a caller leaves out; what the caller passes wins, and a
task nobody registered here gets the protocol's defaults."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from actors import job_spec, task
from actors.worker.tasks import OPTIONS, REGISTRY


@pytest.fixture
def registered() -> Iterator[str]:
    @task(name="tests.defaults.report", queue="reports", priority=5, max_retries=0, timeout=30)
    def report() -> None: ...

    yield "tests.defaults.report"
    REGISTRY.pop("tests.defaults.report", None)
    OPTIONS.pop("tests.defaults.report", None)


def test_fields_left_out_take_the_tasks_declared_defaults(registered: str) -> None:
    spec = job_spec(registered)
    assert (spec.queue, spec.priority, spec.max_retries, spec.timeout) == ("reports", 5, 0, 30.0)


def test_what_the_caller_passes_wins_over_the_declaration(registered: str) -> None:
    spec = job_spec(registered, queue="urgent", priority=0, max_retries=2, timeout=1.0)
    assert (spec.queue, spec.priority, spec.max_retries, spec.timeout) == ("urgent", 0, 2, 1.0)


def test_a_task_not_registered_here_gets_the_protocol_defaults() -> None:
    spec = job_spec("elsewhere.task")
    assert (spec.queue, spec.priority, spec.max_retries, spec.timeout) == ("default", 0, 3, None)
