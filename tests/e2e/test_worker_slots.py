"""A slot is free only when it can run: a thread stuck in a C call after its timeout keeps
its slot, so the job behind it waits for the slot truly (its own timeout starts when its
handler starts) or goes to another worker; no attempt times out without having run."""

from __future__ import annotations

import pytest

from tests.e2e.test_worker_leases import connected
from tests.helpers.cluster import Cluster
from tests.helpers.ledger_tasks import read_ledger

pytestmark = pytest.mark.slow


def attempts_that_timed_out_without_starting(cluster: Cluster, views: list) -> list:  # type: ignore[type-arg]
    started = {(r["job"], r["token"]) for r in read_ledger(cluster.ledger)}
    return [
        (v.job_id, a.token)
        for v in views
        for a in v.history
        if "timed out" in (a.error or "") and (v.job_id, a.token) not in started
    ]


async def test_a_job_behind_a_stuck_timed_out_thread_waits_for_the_slot_then_runs(
    cluster: Cluster,
) -> None:
    cluster.start()
    cluster.worker("only", 1, "--pool", "thread")
    async with cluster.client() as client:
        await connected(client, "only")
        stuck = await client.submit("nap", [2.5], timeout=0.3, max_retries=0)
        assert (await client.wait([stuck], timeout=30))[stuck].status == "FAILED"
        trivial = await client.submit("record", ["behind"], timeout=1.0, max_retries=0)
        outcome = (await client.wait([trivial], timeout=30))[trivial]
        views = [await client.job(stuck), await client.job(trivial)]
    assert outcome.status == "SUCCEEDED", outcome.error
    assert attempts_that_timed_out_without_starting(cluster, views) == []


async def test_a_job_behind_a_stuck_timed_out_thread_runs_on_another_worker_at_once(
    cluster: Cluster,
) -> None:
    """Needs the scheduler side of Results.credits (a result with credits=0 frees no slot)."""
    cluster.start()
    cluster.worker("a", 1, "--pool", "thread")
    cluster.worker("b", 1, "--pool", "thread")
    async with cluster.client() as client:
        await connected(client, "a", "b")
        stuck = await client.submit("nap", [5.0], timeout=0.3, max_retries=0)
        assert (await client.wait([stuck], timeout=30))[stuck].status == "FAILED"
        stuck_view = await client.job(stuck)
        assert stuck_view is not None
        trivial = [await client.submit("record", [i], timeout=1.0, max_retries=0) for i in range(4)]
        outcomes = await client.wait(trivial, timeout=30)
        views = [await client.job(j) for j in trivial]
    assert all(o.status == "SUCCEEDED" for o in outcomes.values()), outcomes
    assert all(v is not None and v.worker != stuck_view.worker for v in views)
    assert attempts_that_timed_out_without_starting(cluster, [stuck_view, *views]) == []
