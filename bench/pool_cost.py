"""What the process pool costs against the thread pool, for a trivial sync task.

Runs every scheduler-side actor, one worker and the client in one process (in-memory
transport, real SQLite file, like ``bench.inproc``), once per pool, and prints jobs/s, the
agent's CPU per job, the time to a handler's start in a fresh child and the time to
replace a killed child (a timed-out job):

    python -m bench.pool_cost [--jobs 5000] [--concurrency 4]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from typing import Any

from actors import AsyncClient, job_spec, task
from actors.config import SchedulerConfig
from actors.scheduler.brain import Brain
from actors.worker.agent import Worker

MODULE = "bench.pool_cost"


@task(name="bench.sync_noop")
def sync_noop() -> None:
    return None


@task(name="bench.sync_sleep")
def sync_sleep(seconds: float) -> None:
    time.sleep(seconds)


async def run(pool: str, jobs: int, concurrency: int) -> dict[str, Any]:
    directory = tempfile.mkdtemp(prefix="corral-pool-")
    config = SchedulerConfig(bind=f"mem://pool-{pool}", db=os.path.join(directory, "c.db"))
    async with Brain(config) as brain:
        worker = Worker(
            brain.address, name=pool, concurrency=concurrency, pool=pool, modules=[MODULE]
        )
        began = time.perf_counter()
        serving = asyncio.create_task(worker.run())
        async with AsyncClient(brain.address, request_timeout=600) as client:
            while not (await client.status()).workers:  # noqa: ASYNC110 - once, at start
                await asyncio.sleep(0.005)
            ready_s = time.perf_counter() - began
            first = time.perf_counter()
            await client.result(await client.submit("bench.sync_noop"), timeout=60)
            first_s = time.perf_counter() - first
            # A timed-out job kills its child (process pool); the next job needs the slot.
            slow = await client.submit("bench.sync_sleep", [0.5], timeout=0.05, max_retries=0)
            await client.wait([slow], timeout=60)
            replaced = time.perf_counter()
            await client.result(await client.submit("bench.sync_noop"), timeout=60)
            replace_s = time.perf_counter() - replaced
            started, cpu = time.perf_counter(), time.process_time()
            ids = await client.submit_many([job_spec("bench.sync_noop")] * jobs)
            outcomes = await client.wait(ids, timeout=600)
            seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        worker.stop()
        await serving
    ok = sum(1 for o in outcomes.values() if o.status == "SUCCEEDED")
    return {
        "pool": pool,
        "jobs": jobs,
        "succeeded": ok,
        "jobs_per_s": round(jobs / seconds),
        "cpu_us_per_job_in_this_process": round(cpu / jobs * 1e6, 1),
        "worker_ready_ms": round(ready_s * 1000, 1),
        "first_job_ms": round(first_s * 1000, 1),
        "job_after_a_kill_ms": round(replace_s * 1000, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    for pool in ("thread", "process"):
        print(json.dumps(asyncio.run(run(pool, args.jobs, args.concurrency))), flush=True)


if __name__ == "__main__":
    main()
