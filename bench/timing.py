"""Issue 17's timing figures on a real cluster: how precisely delayed jobs start at their
time (``--delayed``), and how exactly a rate limit holds over a window (``--rate-limit``).
Start times come from the workers' own records (bench/tasks.py), not from corral; the rate
limit's bound is also checked on the starts the scheduler recorded (``worst_window``).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from rich.progress import Progress

from actors.client import AsyncClient, job_spec
from bench.harness import Cluster
from bench.modes import wait_for_workers
from bench.report import percentiles

# Delayed jobs are due from this long after the submission, so all are in the heap first.
LEAD_S = 2.0
# The rate-limit window opens this long after the submission: the initial burst is spent.
SETTLE_S = 3.0
# Start times are Unix times (about 2.4e-7 s of precision near 1.8e9): a microsecond of
# slack, as the bucket itself allows (strategies.gates.EPS).
EPS_S = 1e-6


def worst_window(
    starts: Iterable[float], count: int, period: float, burst: int
) -> tuple[int, float, float]:
    """A rate limit's contract as a check: over any window, at most ``burst + rate * T``
    starts, T the time from the window's first start to its last (README, Concurrency keys
    and rate limits). Exactly what the scheduler's GCRA bucket promises for the times it
    hands tokens out, which are the starts it records (``started_at``): no slack either
    way. A worker's clock adds each start's delivery delay, which a loaded machine varies
    by more than an interval, so its records may bunch. Returns the window with the most
    starts beyond the bound (rounded down): (excess, its first start, its last); the
    limit held iff the excess is 0 or less."""
    times = sorted(starts)
    rate = count / period
    worst = (-burst, 0.0, 0.0)
    for i, first in enumerate(times):
        for j in range(i, len(times)):
            excess = (j - i + 1) - int(burst + (times[j] - first + EPS_S) * rate)
            if excess > worst[0]:
                worst = (excess, first, times[j])
    return worst


async def recorded_starts(
    client: AsyncClient, ids: Iterable[int]
) -> dict[tuple[int, int], float | None]:
    """When the scheduler recorded each attempt of these jobs as started (its token's time;
    None: never started), by (job id, token), from each job's history."""
    return {
        (job_id, a.token): a.started_at
        for job_id in ids
        if (view := await client.job(job_id)) is not None
        for a in view.history
    }


async def delayed(
    cluster: Cluster, jobs: int, spacing_ms: float, workers: int, concurrency: int, _: Progress
) -> dict[str, Any]:
    """``jobs`` no-op jobs, each due ``spacing_ms`` after the one before (slots always
    free): how late each starts after its time (never early), by the workers' clocks."""
    cluster.start_workers(workers, concurrency)
    async with AsyncClient(
        cluster.address, connect_timeout=20, **cluster.client_options()
    ) as client:
        await wait_for_workers(client, workers)
        first = time.time() + LEAD_S
        due = [first + i * spacing_ms / 1000 for i in range(jobs)]
        ids = await client.submit_many([job_spec("bench.noop", run_at=at) for at in due])
        await client.wait(ids, timeout=LEAD_S + jobs * spacing_ms / 1000 + 120)
    cluster.stop_workers()
    starts = cluster.start_times()
    late = [(starts[j] - at) * 1000 for j, at in zip(ids, due, strict=True) if j in starts]
    return {
        "mode": "delayed",
        "jobs": jobs,
        "spacing_ms": spacing_ms,
        "started_late_ms": percentiles(late),
        "started_early": sum(1 for ms in late if ms < 0),
        "ids": ids,
    }


async def rate_limited(
    cluster: Cluster, rate: float, seconds: float, workers: int, concurrency: int, _: Progress
) -> dict[str, Any]:
    """A limit of ``rate``/s (its default burst, one second's worth) on the no-op task,
    with more jobs queued than it lets through: the starts per second over a window of
    ``seconds`` that begins once the burst is spent (``SETTLE_S`` in), against the rate,
    from the workers' records; and, from the starts the scheduler recorded (every attempt),
    the most any window holds beyond the limit's bound (``over_bound``: 0 or less)."""
    cluster.start_workers(workers, concurrency)
    async with AsyncClient(
        cluster.address, connect_timeout=20, **cluster.client_options()
    ) as client:
        await wait_for_workers(client, workers)
        limits = await client.set_limit("bench.noop", (max(1, round(rate)), 1.0))
        limit = next(x for x in limits if x.name == "bench.noop")
        total = int(rate * (seconds + SETTLE_S) * 1.1 + rate)
        ids = await client.submit_many([job_spec("bench.noop") for _ in range(total)])
        began = time.time()
        await client.wait(ids, timeout=total / rate + 120)
        granted = await recorded_starts(client, ids)
    cluster.stop_workers()
    mine = set(ids)
    starts = sorted(t for j, t in cluster.start_times().items() if j in mine)
    opens = began + SETTLE_S
    window = [t for t in starts if opens <= t < opens + seconds]
    achieved = len(window) / seconds
    return {
        "mode": "rate-limit",
        "limit_per_s": rate,
        "window_s": seconds,
        "started_in_window": len(window),
        "achieved_per_s": round(achieved, 2),
        "off_by_pct": round(100 * (achieved - rate) / rate, 2),
        "over_bound": worst_window(
            [t for t in granted.values() if t is not None], limit.count, limit.period, limit.burst
        )[0],
        "ids": ids,
    }
