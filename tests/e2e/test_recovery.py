"""Durable acknowledgement and crash recovery: the scheduler is SIGKILLed mid-run and restarted
on the same SQLite file; every acknowledged job finishes, none is committed twice, and leases
held across the crash are fenced."""

from __future__ import annotations

import asyncio
import signal
from collections import Counter

import pytest

from actors.client import job_spec
from tests.helpers.cluster import Cluster
from tests.helpers.ledger_tasks import completed, read_ledger
from tests.helpers.waiting import until, until_running, until_started
from transport import protocol as wire

pytestmark = pytest.mark.slow


async def test_scheduler_sigkilled_twice_mid_run_loses_and_doubles_nothing(
    cluster: Cluster,
) -> None:
    cluster.start(workers=3, slots=4)
    async with cluster.client() as client:
        ids = await client.submit_many([job_spec("token", [0.002]) for _ in range(3000)])
        acknowledged = set(ids)
        for fraction in (0.25, 0.6):
            while (await client.status()).jobs.get("SUCCEEDED", 0) < fraction * 3000:  # noqa: ASYNC110
                await asyncio.sleep(0.02)  # polling the scheduler is the point here
            cluster.restart_scheduler()
        outcomes = await client.wait(ids, timeout=120)
        views = {v.job_id: v for v in await client.jobs("SUCCEEDED", limit=5000)}
    assert len(acknowledged) == 3000
    assert {o.status for o in outcomes.values()} == {"SUCCEEDED"}
    assert set(views) == acknowledged
    runs = read_ledger(cluster.ledger)
    max_token: dict[int, int] = {}
    for r in runs:
        max_token[r["job"]] = max(max_token.get(r["job"], 0), r["token"])
    for job_id in ids:
        # One committed result per job, and it is the one from the job's last lease.
        assert wire.unpack(outcomes[job_id].result) == views[job_id].token == max_token[job_id]
    reruns = sum(n - 1 for n in Counter(r["job"] for r in completed(cluster.ledger)).values())
    assert reruns <= 2 * 12, "only jobs in flight at a kill may run again"


async def test_a_lease_held_across_a_scheduler_restart_is_kept_by_its_worker(
    cluster: Cluster,
) -> None:
    # A lease that a restart surely fits in: starting a scheduler process takes about half
    # a second here, more under load, and a restart slower than the lease must (and does)
    # end in self-fencing and a re-run, which is not what this test is about.
    cluster.start("--lease", "4", "--lease-grace", "1")
    cluster.worker("steady", 1)
    async with cluster.client() as client:
        job_id = await client.submit("record", ["kept"], {"seconds": 2.0})
        await until_started(cluster.ledger, job_id)
        cluster.restart_scheduler()  # back within the lease: the worker reconnects
        assert await client.result(job_id, timeout=30) == "kept"
        view = await client.job(job_id)
    assert view is not None
    assert (view.token, view.attempts) == (1, 1), "adopted, not reclaimed and re-run"
    assert len(read_ledger(cluster.ledger)) == 1


async def test_running_jobs_of_a_dead_scheduler_are_reclaimed_under_a_new_token(
    cluster: Cluster,
) -> None:
    cluster.start()
    lost = cluster.worker("lost", 1)
    async with cluster.client() as client:
        job_id = await client.submit("token", [1.5])
        await until_running(client, job_id)
        cluster.scheduler.send_signal(signal.SIGKILL)
        lost.send_signal(signal.SIGKILL)  # its lease dies with it; nobody can claim it
        cluster.restart_scheduler()
        cluster.worker("new", 1)
        result = await client.result(job_id, timeout=30)
        view = await client.job(job_id)
    assert view is not None
    assert (view.status, view.worker) == ("SUCCEEDED", "new")
    # Token 2 normally; a loaded machine may let that lease lapse too (the fast test timings
    # give a one-second lease), and then a later one runs it. What holds: a new token, and
    # the committed result is the run under the token the job ended with.
    assert view.token >= 2
    assert result == view.token


async def test_idempotency_keys_hold_under_concurrency_and_across_restarts(
    cluster: Cluster,
) -> None:
    cluster.start()
    clients = [cluster.client() for _ in range(100)]
    await asyncio.gather(*(c.connect() for c in clients))
    try:
        ids = await asyncio.gather(
            *(c.submit("record", [i], idempotency_key="invoice-7") for i, c in enumerate(clients))
        )
        assert len(set(ids)) == 1
        status = await clients[0].status()
        assert sum(status.jobs.values()) == 1, "100 concurrent submissions made one job"
    finally:
        await asyncio.gather(*(c.close() for c in clients))
    cluster.restart_scheduler()
    async with cluster.client() as client:
        assert await client.submit("record", [0], idempotency_key="invoice-7") == ids[0]
        assert sum((await client.status()).jobs.values()) == 1


async def test_a_scheduler_away_past_the_lease_costs_no_job_an_attempt(cluster: Cluster) -> None:
    """The scheduler SIGKILLed and back only after the lease: its worker stopped its running
    job itself (self-fencing) and dropped the two waiting in its prefetch. None of that was
    the jobs' doing ("a scheduler restart does not" count): with no retries allowed, each
    still runs again and succeeds, its interrupted attempt recorded but not counted."""
    cluster.start()  # the fast test timings: a 1 s lease
    cluster.worker("w", 1, "--prefetch", "2")
    async with cluster.client() as client:
        running = await client.submit("record", ["long"], {"seconds": 3.0}, max_retries=0)
        await until_started(cluster.ledger, running)
        waiting = [await client.submit("record", [i], max_retries=0) for i in range(2)]
        await until_running(client, waiting[-1])  # leased to w, behind the long one
        cluster.stop_scheduler()

        async def fenced() -> bool:
            return "self-fencing" in cluster.log("w")

        await until(fenced)
        cluster.start_scheduler()
        ids = [running, *waiting]
        outcomes = await client.wait(ids, timeout=60)
        views = [await client.job(job_id) for job_id in ids]
    assert {o.status for o in outcomes.values()} == {"SUCCEEDED"}
    for view in views:
        assert view is not None
        assert view.attempts == 1, f"job {view.job_id}: the restart cost it an attempt"
        assert "interrupted" in [a.outcome for a in view.history if a.token < view.token]
