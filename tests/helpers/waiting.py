"""Polling helpers for end-to-end tests: wait for a state the scheduler reports."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from actors.client import AsyncClient
from transport import protocol as wire


async def until_running(
    client: AsyncClient, job_id: int, worker: str | None = None, timeout: float = 20.0
) -> wire.JobView:
    """The job's view once it is RUNNING (on ``worker``, if given); TimeoutError otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        view = await client.job(job_id)
        if view is not None and view.status == "RUNNING" and worker in (None, view.worker):
            return view
        await asyncio.sleep(0.02)
    raise TimeoutError(f"job {job_id} was not RUNNING{' on ' + worker if worker else ''} in time")


async def until_started(ledger: str, job_id: int, timeout: float = 20.0) -> None:
    """Wait until a handler of ``job_id`` has written its ``start`` line to the ledger.

    RUNNING in the scheduler means the lease committed; the Assign may still be on its way,
    and a scheduler killed at that moment takes it with it (the job then never ran, and is
    rightly reclaimed). Tests about a running handler wait for this instead."""
    from tests.helpers.ledger_tasks import read_events

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(e["job"] == job_id and e["event"] == "start" for e in read_events(ledger)):
            return
        await asyncio.sleep(0.02)
    raise TimeoutError(f"no handler of job {job_id} started in time")


async def until_workers(client: AsyncClient, names: set[str], timeout: float = 30.0) -> None:
    """Wait until every worker in ``names`` is connected and alive (worker processes start
    in their own time; a test about sharing work among them starts once all are there)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = await client.status()
        if names <= {w.name for w in status.workers if w.state == "alive"}:
            return
        await asyncio.sleep(0.05)
    raise TimeoutError(f"workers {sorted(names)} did not all connect in time")


async def until(predicate: Callable[[], Awaitable[Any]], timeout: float = 20.0) -> Any:
    """Poll the async ``predicate`` every 50 ms until it returns something true; that value.
    TimeoutError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await predicate()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise TimeoutError("condition not met in time")
