"""Strategies, capacity and queue isolation on real worker processes, measured from the
workers' own ledger."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import pytest

import strategies
from actors.client import job_spec
from tests.helpers.cluster import Cluster
from tests.helpers.ledger_tasks import completed, read_ledger
from tests.helpers.waiting import until_workers

pytestmark = pytest.mark.slow


def peak_concurrency(runs: list[dict[str, Any]]) -> dict[str, int]:
    events: list[tuple[float, int, str]] = []
    for r in runs:
        events.append((r["start"], 1, r["worker"]))
        events.append((r["end"], -1, r["worker"]))
    now: Counter[str] = Counter()
    peak: Counter[str] = Counter()
    for _, delta, worker in sorted(events, key=lambda e: (e[0], e[1])):
        now[worker] += delta
        peak[worker] = max(peak[worker], now[worker])
    return dict(peak)


@pytest.mark.parametrize("strategy", sorted(strategies.STRATEGIES))
async def test_every_strategy_runs_every_job_exactly_once(cluster: Cluster, strategy: str) -> None:
    cluster.start("--strategy", strategy)
    cluster.worker("w0", 3)
    cluster.worker("w1", 2)
    async with cluster.client() as client:
        ids = await client.submit_many(
            [job_spec("record", [i], priority=i % 3) for i in range(300)]
        )
        outcomes = await client.wait(ids, timeout=60)
        status = await client.status()
    assert status.strategy == strategy
    assert {o.status for o in outcomes.values()} == {"SUCCEEDED"}
    runs = Counter(r["job"] for r in completed(cluster.ledger))
    assert set(runs) == set(ids)
    assert set(runs.values()) == {1}


async def test_round_robin_shares_3000_jobs_evenly_across_three_workers(cluster: Cluster) -> None:
    cluster.start("--strategy", "round-robin")
    for i in range(3):
        cluster.worker(f"w{i}", 2)
    async with cluster.client() as client:
        while len((await client.status()).workers) < 3:  # noqa: ASYNC110
            await asyncio.sleep(0.05)  # all three must be there before the backlog lands
        # Jobs that take a little time, so shares reflect the strategy rather than which
        # worker process the OS happened to run first on a loaded two-core machine.
        ids = await client.submit_many(
            [job_spec("record", [i], {"seconds": 0.005}) for i in range(3000)]
        )
        await client.wait(ids, timeout=120)
    shares = Counter(r["worker"] for r in completed(cluster.ledger))
    assert sum(shares.values()) == 3000
    for worker in ("w0", "w1", "w2"):
        assert abs(shares[worker] - 1000) <= 100, shares


async def test_no_worker_exceeds_its_slots_and_sizes_share_in_proportion(cluster: Cluster) -> None:
    cluster.start()
    cluster.worker("four", 4)
    cluster.worker("one", 1)
    async with cluster.client() as client:
        while len((await client.status()).workers) < 2:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        ids = await client.submit_many(
            [job_spec("record", [i], {"seconds": 0.02}) for i in range(500)]
        )
        await client.wait(ids, timeout=120)
    runs = completed(cluster.ledger)
    assert peak_concurrency(runs) == {"four": 4, "one": 1}
    shares = Counter(r["worker"] for r in runs)
    assert 3.0 <= shares["four"] / shares["one"] <= 5.0, shares


async def test_priority_aging_lets_a_low_job_start_within_its_bound_under_a_flood(
    cluster: Cluster,
) -> None:
    aging = 1.0  # a priority-10 flood can hold a priority-0 job back by at most 1 s
    cluster.start("--priority-aging", str(aging))
    cluster.worker("solo", 1)
    async with cluster.client() as client:
        # The clock starts once the worker serves: its start-up (seconds on a loaded CI
        # machine: it failed at 4.49 s so) is not what the aging bound is about.
        await until_workers(client, {"solo"})
        flood = [job_spec("record", ["high"], {"seconds": 0.01}, priority=10)] * 50
        await client.submit_many(flood)  # a backlog the worker cannot clear...
        low = await client.submit("record", ["low"], priority=0)
        submitted = time.time()
        started = None
        for _ in range(160):  # ...kept topped up faster than it drains, for up to 8 s
            await client.submit_many(flood[:10])
            low_runs = [r for r in read_ledger(cluster.ledger) if r["job"] == low]
            if low_runs:
                started = low_runs[0]["start"]
                break
            await asyncio.sleep(0.05)
        backlog = (await client.status()).jobs["QUEUED"]
    assert backlog > 0, "the flood never let up"
    assert started is not None, "the low-priority job starved"
    # Promoted after `aging`, then the next free slot. Three seconds of margin for a loaded
    # machine (seen: 1.57 s with three test processes and other sessions' suites), still
    # far short of the 8 s flood that starves it without aging.
    assert started - submitted <= aging + 3.0, "promoted after `aging`, plus a slot freeing"


async def test_a_flood_of_slow_heavy_jobs_does_not_delay_light_jobs_with_their_own_worker(
    cluster: Cluster,
) -> None:
    cluster.start()
    cluster.worker("heavy-worker", 2, "--queues", "heavy")
    cluster.worker("light-worker", 2, "--queues", "light")
    async with cluster.client() as client:
        heavy = await client.submit_many(
            [job_spec("record", ["heavy"], {"seconds": 0.1}, queue="heavy")] * 500
        )
        started = time.monotonic()
        light = await client.submit_many([job_spec("record", ["light"], queue="light")] * 100)
        outcomes = await client.wait(light, timeout=30)
        light_seconds = time.monotonic() - started
        heavy_done = sum(1 for o in (await client.wait(heavy[:1], timeout=30)).values())
        status = await client.status()
    assert {o.status for o in outcomes.values()} == {"SUCCEEDED"}
    assert status.jobs["QUEUED"] + status.jobs["RUNNING"] > 0, "heavy was still busy"
    assert heavy_done == 1
    assert light_seconds < 10
    workers = {r["worker"] for r in completed(cluster.ledger) if r["value"] == "light"}
    assert workers == {"light-worker"}


async def test_a_job_runs_only_on_a_worker_with_its_task_and_waits_for_one_without_blocking(
    cluster: Cluster,
) -> None:
    """Issue 13.13: with two workers on one queue, one with module ``tasks`` and one with
    ``etl``, ``etl.extract`` went four times to the worker without it."""
    cluster.start()
    cluster.worker("plain", 2)  # tests.helpers.ledger_tasks: no etl.extract
    async with cluster.client() as client:
        while len((await client.status()).workers) < 1:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        waiting = await client.submit("etl.extract", ["early"], priority=9)
        behind = await client.submit_many([job_spec("record", [i]) for i in range(20)])
        outcomes = await client.wait(behind, timeout=30)  # not blocked behind it
        assert {o.status for o in outcomes.values()} == {"SUCCEEDED"}
        status = await client.status()
        assert status.queues["default"].waiting_for_worker == 1
        view = await client.job(waiting)
        assert view is not None
        assert (view.status, view.attempts) == ("QUEUED", 0), "never tried on plain"

        cluster.worker("etl", tasks="tests.e2e.etl_tasks")
        mixed = await client.submit_many(
            [job_spec("etl.extract" if i % 2 else "record", [i]) for i in range(40)]
        )
        outcomes = await client.wait([waiting, *mixed], timeout=30)
        assert {o.status for o in outcomes.values()} == {"SUCCEEDED"}
        assert (await client.status()).queues["default"].waiting_for_worker == 0
    runs = completed(cluster.ledger)
    workers = {r["job"]: r["worker"] for r in runs}
    assert Counter(r["job"] for r in runs)[waiting] == 1
    assert workers[waiting] == "etl"
    assert {workers[j] for j in mixed[1::2]} == {"etl"}
    assert {workers[j] for j in [*behind, *mixed[::2]]} == {"plain"}
