"""``python -m bench --curve --rate R``: a plain cluster and a keyed one up side by side,
the steady rate's jobs going to one and then the other in blocks of ``BLOCK_S`` seconds.

Run one after the other, a plain run and a keyed run of 10 s each landed in different
spells of this shared machine: their p99s moved by milliseconds from one run to the next
and decided nothing about a 0.2 ms bar. Interleaved by the second, both sides see the same
spells: each side gets ``R x duration`` jobs at R jobs/s (one at a time, each a
submit-and-wait, as ``modes.steady_rate``), the idle side's cluster only heartbeating
(about 1 ms of CPU a second), and which side opens alternates between rounds. A round's
clusters are new (fresh SQLite files, new processes), as in the other modes.
"""

from __future__ import annotations

import asyncio
import os
import time
from contextlib import AsyncExitStack
from typing import Any

from actors import AsyncClient, job_spec
from bench.curve import Pair
from bench.harness import Cluster
from bench.modes import wait_for_workers
from bench.report import percentiles

BLOCK_S = 1.0  # seconds of jobs to one side before the other's turn


def side_by_side(
    strategy: str, rate: float, duration: float, workers: int, concurrency: int
) -> Pair:
    """The rounds of ``--curve --rate`` (SQLite only: each side needs its own database)."""

    def pair(round_no: int) -> tuple[dict[bool, dict[str, Any]], str]:
        clusters = {
            keyed: Cluster(("--strategy", strategy), curve=keyed) for keyed in (False, True)
        }
        opens = round_no % 2 == 0  # the keyed side opens in even rounds
        try:
            for cluster in clusters.values():
                cluster.start_scheduler()
            load = os.getloadavg()[0]
            got = asyncio.run(_interleave(clusters, rate, duration, workers, concurrency, opens))
        finally:
            for cluster in clusters.values():
                cluster.stop()
        for keyed, cluster in clusters.items():
            ids = got[keyed].pop("ids")
            runs = cluster.executions()
            got[keyed]["lost"] = sum(1 for i in ids if runs[i] == 0)
            got[keyed]["duplicated"] = sum(runs[i] - 1 for i in ids if runs[i] > 1)
            got[keyed]["load"] = load
        return got, "both"

    return pair


async def _interleave(
    clusters: dict[bool, Cluster],
    rate: float,
    duration: float,
    workers: int,
    concurrency: int,
    keyed_opens: bool,
) -> dict[bool, dict[str, Any]]:
    for cluster in clusters.values():
        cluster.start_workers(workers, concurrency)
    noop = job_spec("bench.noop")
    submitted: dict[bool, dict[int, float]] = {False: {}, True: {}}
    async with AsyncExitStack() as stack:
        clients = {
            keyed: await stack.enter_async_context(
                AsyncClient(cluster.address, connect_timeout=20, **cluster.client_options())
            )
            for keyed, cluster in clusters.items()
        }
        for client in clients.values():
            await wait_for_workers(client, workers)

        async def one(keyed: bool) -> None:
            sent = time.time()
            [outcome] = await clients[keyed].submit_and_wait([noop], timeout=120)
            submitted[keyed][outcome.job_id] = sent

        total, block = 2 * int(rate * duration), max(1, int(rate * BLOCK_S))
        cpu_before = {keyed: cluster.cpu_seconds() for keyed, cluster in clusters.items()}
        tasks = []
        began = time.perf_counter()
        for n in range(total):
            delay = began + n / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            keyed = bool((n // block) % 2) != keyed_opens
            tasks.append(asyncio.ensure_future(one(keyed)))
        await asyncio.gather(*tasks)
        seconds = time.perf_counter() - began
        cpu = {
            keyed: cluster.cpu_seconds() - cpu_before[keyed] for keyed, cluster in clusters.items()
        }
    got: dict[bool, dict[str, Any]] = {}
    for keyed, cluster in clusters.items():
        cluster.stop_workers()
        starts = cluster.start_times()
        to_start = [(starts[j] - t) * 1000 for j, t in submitted[keyed].items() if j in starts]
        done = len(submitted[keyed])
        got[keyed] = {
            "jobs": total // 2,
            "completed": done,
            "jobs_per_s": done / (seconds / 2),
            "latency_ms": percentiles(to_start),
            "scheduler_cpu_ms_per_job": round(cpu[keyed] * 1000 / max(1, done), 3),
            "samples_ms": to_start,
            "ids": list(submitted[keyed]),
        }
    return got
