"""Retries with exponential backoff, the dead-letter queue, cancellation: real processes."""

from __future__ import annotations

import asyncio
import itertools
import json

import pytest

from tests.e2e.test_cli import corral
from tests.helpers.cluster import Cluster
from tests.helpers.ledger_tasks import read_ledger
from tests.helpers.waiting import until_running

pytestmark = pytest.mark.slow

# Dispatch latency on a loaded 2-core machine: an allowance, not a timing assertion on speed.
SLACK_S = 0.25


@pytest.fixture
def started(cluster: Cluster) -> Cluster:
    """The cluster, started: a scheduler and one worker, w, with two slots."""
    cluster.start()
    cluster.worker("w", 2)
    return cluster


async def test_a_job_that_fails_twice_succeeds_on_the_third_attempt_within_backoff_bounds(
    started: Cluster,
) -> None:
    async with started.client() as client:
        job_id = await client.submit("fail_until", [2], max_retries=3, backoff=(0.4, 2.0, 10.0))
        assert await client.result(job_id, timeout=30) == 3
        view = await client.job(job_id)
    assert view is not None
    assert [a.outcome for a in view.history] == ["error", "error", "succeeded"]
    assert "planned failure on attempt 1" in (view.history[0].error or "")
    runs = read_ledger(started.ledger)
    assert [r["attempt"] for r in runs] == [1, 2, 3]
    delays = [b["start"] - a["end"] for a, b in itertools.pairwise(runs)]
    # delay n = min(cap, base * factor^(n-1)) * uniform(0.5, 1)
    for delay, ceiling in zip(delays, [0.4, 0.8], strict=True):
        assert ceiling * 0.5 <= delay <= ceiling + SLACK_S, (delays, ceiling)


async def test_an_always_failing_job_is_dead_lettered_and_requeue_runs_it_again(
    started: Cluster,
) -> None:
    async with started.client() as client:
        job_id = await client.submit("fail_below_token", [3], max_retries=2, backoff=(0.05, 1, 1))
        outcome = (await client.wait([job_id], timeout=30))[job_id]
        assert outcome.status == "FAILED"
        assert len(read_ledger(started.ledger)) == 3, "max_retries + 1 attempts"

        listed = corral("dlq", "list", "--json", "--connect", started.address)
        assert listed.returncode == 0, listed.stderr
        assert [j["job_id"] for j in json.loads(listed.stdout)] == [job_id]
        shown = corral("dlq", "show", str(job_id), "--connect", started.address)
        assert shown.returncode == 0, shown.stderr
        for token in (1, 2, 3):
            assert f"planned failure under token {token}" in shown.stdout
        table = corral("dlq", "list", "--connect", started.address)
        assert str(job_id) in table.stdout

        requeued = corral("dlq", "requeue", str(job_id), "--connect", started.address)
        assert requeued.returncode == 0, requeued.stderr
        assert requeued.stdout.strip() == f"re-queued 1 job(s): {job_id}"
        assert await client.result(job_id, timeout=30) == 4, "ran again under a new token"
        assert corral("dlq", "requeue", str(job_id), "--connect", started.address).returncode == 1
        empty = corral("dlq", "requeue", "--all", "--connect", started.address)
        assert empty.stdout.strip() == "re-queued 0 job(s)"


async def test_cancelled_pending_and_queued_jobs_never_run(started: Cluster) -> None:
    async with started.client() as client:
        blocker = await client.submit("record", ["blocker"], {"seconds": 1.0})
        pending = await client.submit("record", ["pending"], depends_on=[blocker])
        statuses = await client.cancel([pending, 424242])
        assert statuses == {pending: "CANCELLED", 424242: "NOT_FOUND"}
        await client.wait([blocker], timeout=20)
        assert (await client.wait([pending], timeout=5))[pending].status == "CANCELLED"
        child = await client.submit("record", ["child"], depends_on=[pending])
        assert (await client.wait([child], timeout=5))[child].status == "UPSTREAM_FAILED"
    assert [r["value"] for r in read_ledger(started.ledger)] == ["blocker"]


async def test_a_cancelled_running_job_is_told_to_stop_and_its_slot_freed(started: Cluster) -> None:
    async with started.client() as client:
        long = await client.submit("record", ["long"], {"seconds": 30.0})
        await until_running(client, long)
        done = corral("cancel", str(long), "--connect", started.address)
        assert done.stdout.split() == [str(long), "CANCELLED"]
        assert (await client.wait([long], timeout=5))[long].status == "CANCELLED"
        for _ in range(100):
            runs = read_ledger(started.ledger)
            status = await client.status()
            if status.workers and status.workers[0].running == 0:
                break
            await asyncio.sleep(0.05)
        assert status.workers[0].running == 0
        view = await client.job(long)
    assert runs[0]["end"] is None, "the handler was stopped, not run to its end"
    assert view is not None
    assert [a.outcome for a in view.history] == ["cancelled"]


async def test_a_timed_out_attempt_counts_as_a_failure_and_its_handler_is_stopped(
    started: Cluster,
) -> None:
    async with started.client() as client:
        job_id = await client.submit(
            "record", ["slow"], {"seconds": 5.0}, timeout=0.3, max_retries=1, backoff=(0.05, 1, 1)
        )
        outcome = (await client.wait([job_id], timeout=20))[job_id]
        view = await client.job(job_id)
    assert outcome.status == "FAILED"
    assert view is not None
    assert [a.error for a in view.history] == ["timed out after 0.3s"] * 2
    runs = read_ledger(started.ledger)
    assert len(runs) == 2
    assert all(r["end"] is None for r in runs), "each timed-out handler was stopped"
