"""In-process mode: every scheduler-side actor, one worker and the client in one process,
over the in-memory transport, with a real SQLite file. It reports CPU time per job, a
steadier figure than wall-clock throughput on a shared two-core machine: use it to compare
two versions of the hot path."""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from typing import Any

from actors import AsyncClient, job_spec
from actors.config import SchedulerConfig
from actors.scheduler.brain import Brain
from actors.worker.agent import Worker
from bench.report import percentiles


async def _noop() -> None:
    return None


async def run_inproc(jobs: int, concurrency: int) -> dict[str, Any]:
    directory = tempfile.mkdtemp(prefix="corral-inproc-")
    config = SchedulerConfig(bind="mem://bench-inproc", db=os.path.join(directory, "corral.db"))
    async with Brain(config) as brain:
        worker = Worker(
            brain.address, name="inproc", concurrency=concurrency, registry={"bench.noop": _noop}
        )
        serving = asyncio.create_task(worker.run())
        async with AsyncClient(brain.address, request_timeout=600) as client:
            while not (await client.status()).workers:  # noqa: ASYNC110 - once, at start
                await asyncio.sleep(0.01)
            started, cpu = time.perf_counter(), time.process_time()
            ids: list[int] = []
            for start in range(0, jobs, 5000):
                ids += await client.submit_many([job_spec("bench.noop")] * min(5000, jobs - start))
            outcomes = await client.wait(ids, timeout=600)
            seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        worker.stop()
        await serving
    succeeded = sum(1 for o in outcomes.values() if o.status == "SUCCEEDED")
    return {
        "mode": "inproc",
        "jobs": jobs,
        "completed": succeeded,
        "seconds": seconds,
        "jobs_per_s": jobs / seconds,
        "cpu_us_per_job": round(cpu / jobs * 1e6, 1),
        "latency_ms": percentiles([]),
        "scheduler_rss_mb": 0.0,
        "lost": jobs - succeeded,
        "duplicated": max(0, worker.executed - jobs),
    }
