"""Polling helpers for end-to-end tests: wait for a state the scheduler reports."""

from __future__ import annotations

import asyncio
import time

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
