"""The core path on real processes: a scheduler process, worker processes, ZeroMQ over TCP,
a SQLite file. Executions are counted from the workers' own ledger, not from corral."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from actors.client import job_spec
from tests.helpers.cluster import Cluster
from tests.helpers.ledger_tasks import completed as read_ledger
from transport import protocol as wire

pytestmark = pytest.mark.slow


async def test_thousand_jobs_on_three_worker_processes_each_run_once(
    cluster: Cluster,
) -> None:
    cluster.start(workers=3, slots=4)
    async with cluster.client() as client:
        ids = await client.submit_many([job_spec("record", [i]) for i in range(1000)])
        outcomes = await client.wait(ids, timeout=60)
    assert len(set(ids)) == 1000
    assert {o.status for o in outcomes.values()} == {"SUCCEEDED"}
    assert [wire.unpack(outcomes[j].result) for j in ids] == list(range(1000))
    ledger = read_ledger(cluster.ledger)
    runs = Counter(e["job"] for e in ledger)
    assert set(runs) == set(ids)
    assert set(runs.values()) == {1}, "each job executed exactly once"
    shares = Counter(e["worker"] for e in ledger)
    assert set(shares) == {"w0", "w1", "w2"}, f"every worker got a share: {shares}"


@pytest.mark.parametrize(
    ("strategy", "expect"),
    [("priority", "priority order, FIFO among equals"), ("fifo", "submission order")],
)
async def test_single_slot_worker_drains_a_backlog_in_strategy_order(
    cluster: Cluster, strategy: str, expect: str
) -> None:
    cluster.start("--strategy", strategy)
    priorities = [0, 5, 1, 5, 0, 9, 1, 9, 0, 5]
    async with cluster.client() as client:
        ids = await client.submit_many(
            [job_spec("record", [i], priority=p) for i, p in enumerate(priorities)]
        )
        cluster.worker("solo", 1)  # the backlog exists before any slot does
        await client.wait(ids, timeout=30)
    ran = [e["value"] for e in sorted(read_ledger(cluster.ledger), key=lambda e: e["start"])]
    if strategy == "priority":
        expected = sorted(range(len(priorities)), key=lambda i: (-priorities[i], i))
    else:
        expected = list(range(len(priorities)))
    assert ran == expected, expect


async def test_scheduler_sigkill_keeps_succeeded_jobs_and_runs_the_rest(
    cluster: Cluster,
) -> None:
    cluster.start(workers=1, slots=2)
    async with cluster.client() as client:
        ids = await client.submit_many(
            [job_spec("record", [i], {"seconds": 0.05}) for i in range(60)]
        )
        first = await client.wait(ids[:10], timeout=30)
        assert {o.status for o in first.values()} == {"SUCCEEDED"}
        cluster.restart_scheduler()
        outcomes = await client.wait(ids, timeout=60)  # the client re-registers its wait
        assert {o.status for o in outcomes.values()} == {"SUCCEEDED"}
        for i, job_id in enumerate(ids[:10]):
            view = await client.job(job_id)
            assert view is not None
            assert view.status == "SUCCEEDED"
            assert wire.unpack(view.result) == i
    ledger = read_ledger(cluster.ledger)
    assert {e["job"] for e in ledger} == set(ids)
    # A job that ran before the kill is not re-run just because the scheduler restarted,
    # unless it was still running at the kill (at-least-once for those).
    runs = Counter(e["job"] for e in ledger)
    assert all(runs[j] == 1 for j in ids[:10])


async def test_status_reports_counts_and_workers(cluster: Cluster) -> None:
    cluster.start(workers=1, slots=3)
    async with cluster.client() as client:
        ids = await client.submit_many([job_spec("record", [i]) for i in range(25)])
        await client.wait(ids, timeout=30)
        for _ in range(50):
            status = await client.status()
            if status.workers:
                break
            await asyncio.sleep(0.1)
    assert status.jobs["SUCCEEDED"] == 25
    assert status.strategy == "priority"
    [worker] = status.workers
    assert (worker.name, worker.state, worker.slots, worker.running) == ("w0", "alive", 3, 0)
