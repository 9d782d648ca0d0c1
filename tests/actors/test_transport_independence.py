"""The same actors, unchanged, on every transport: in-memory, tcp://, ipc:// and inproc://.
Scheduler, worker agent and client all run in this process; only the address differs."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from actors.client import AsyncClient, job_spec
from actors.config import SchedulerConfig
from actors.errors import JobFailed, RequestRefused
from actors.scheduler.brain import Brain
from actors.scheduler.store.memory import MemoryStore
from actors.worker.agent import Worker
from tests.helpers.procs import free_address

_n = itertools.count()


def _address(kind: str, tmp: Path) -> str:
    return {
        "mem": lambda: f"mem://independence-{next(_n)}",
        "tcp": free_address,
        "ipc": lambda: f"ipc://{tmp}/s{next(_n)}.sock",
        "inproc": lambda: f"inproc://independence-{uuid.uuid4().hex}",
    }[kind]()


def add(a: int, b: int) -> int:
    return a + b


async def async_double(x: int) -> int:
    await asyncio.sleep(0)
    return 2 * x


def always_fails() -> None:
    raise ValueError("nope")


TASKS: dict[str, Any] = {"add": add, "double": async_double, "fails": always_fails}


@pytest.fixture(params=["mem", "tcp", "ipc", "inproc"])
async def running(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncClient]:
    config = SchedulerConfig(
        bind=_address(request.param, tmp_path),
        db=str(tmp_path / "c.db"),
        backoff_base=0.01,
        backoff_cap=0.05,
    )
    # The in-memory transport goes with the in-memory store: the actors alone, no I/O.
    backend = MemoryStore() if request.param == "mem" else None
    async with Brain(config, backend) as brain:
        worker = Worker(brain.address, name="w", concurrency=3, registry=TASKS)
        serving = asyncio.create_task(worker.run())
        async with AsyncClient(brain.address) as client:
            yield client
        worker.stop()
        await asyncio.wait_for(serving, 10)


async def test_sync_and_async_tasks_return_results(running: AsyncClient) -> None:
    a = await running.submit("add", [2, 3])
    b = await running.submit("double", [21])
    assert await running.result(a, timeout=10) == 5
    assert await running.result(b, timeout=10) == 42


async def test_a_failing_task_is_retried_then_reports_its_traceback(running: AsyncClient) -> None:
    job_id = await running.submit("fails", max_retries=2)
    with pytest.raises(JobFailed) as failure:
        await running.result(job_id, timeout=10)
    assert failure.value.status == "FAILED"
    assert "ValueError: nope" in (failure.value.error or "")
    assert "Traceback" in (failure.value.error or "")
    view = await running.job(job_id)
    assert view is not None
    assert view.attempts == 3


async def test_a_task_no_worker_has_is_refused_when_the_submitter_requires_one(
    running: AsyncClient,
) -> None:
    with pytest.raises(RequestRefused, match="no_worker"):
        await running.submit("nope.missing", require_worker=True)
    job_id = await running.submit("nope.missing")  # without: it waits for such a worker
    assert (await running.job(job_id)).status == "QUEUED"


async def test_a_child_runs_after_its_parent_and_fails_when_it_fails(running: AsyncClient) -> None:
    parent = await running.submit("add", [1, 1])
    child = await running.submit("add", [2, 2], depends_on=[parent])
    assert await running.result(child, timeout=10) == 4
    bad = await running.submit("fails", max_retries=0)
    doomed = await running.submit("add", [3, 3], depends_on=[bad])
    outcome = (await running.wait([doomed], timeout=10))[doomed]
    assert outcome.status == "UPSTREAM_FAILED"
    assert f"upstream job {bad} ended FAILED" in (outcome.error or "")
    late = await running.submit("add", [4, 4], depends_on=[bad])
    assert (await running.wait([late], timeout=10))[late].status == "UPSTREAM_FAILED"


async def test_unknown_parents_are_refused_and_nothing_is_created(running: AsyncClient) -> None:
    with pytest.raises(RequestRefused, match="unknown_parent"):
        await running.submit_many([job_spec("add", [1, 1]), job_spec("add", [1], depends_on=[999])])
    status = await running.status()
    assert sum(status.jobs.values()) == 0


async def test_idempotency_key_returns_the_existing_job(running: AsyncClient) -> None:
    first = await running.submit("add", [1, 2], idempotency_key="k-1")
    again = await running.submit("add", [9, 9], idempotency_key="k-1")
    assert again == first
    assert await running.result(first, timeout=10) == 3
