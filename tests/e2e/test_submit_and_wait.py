"""Submit-and-wait in one request (``AsyncClient.run`` / ``submit_and_wait``) on real
processes: the job's result comes back without a separate Wait, and every way a job can end
reaches the caller the same way ``wait`` would report it."""

from __future__ import annotations

import asyncio
import signal

import pytest

from actors.client import Client, job_spec
from actors.errors import JobFailed, RequestRefused, SchedulerUnreachable, WaitTimeout
from tests.helpers.cluster import Cluster
from transport import protocol as wire

pytestmark = pytest.mark.slow


async def test_run_returns_the_result_and_submit_and_wait_keeps_submission_order(
    cluster: Cluster,
) -> None:
    cluster.start()
    cluster.worker("w", 4)
    async with cluster.client() as client:
        assert await client.run("record", [41], timeout=30) == 41
        specs = [job_spec("record", [i], {"seconds": 0.05 * (5 - i)}) for i in range(5)]
        outcomes = await client.submit_and_wait(specs, timeout=30)
        assert [o.status for o in outcomes] == ["SUCCEEDED"] * 5
        # later jobs finish first; the list is still in submission order
        assert [o.job_id for o in outcomes] == sorted(o.job_id for o in outcomes)
        assert client._waits == {}, "nothing left registered"


async def test_failures_timeouts_and_refusals_reach_the_caller(cluster: Cluster) -> None:
    cluster.start()
    async with cluster.client() as client:
        with pytest.raises(WaitTimeout):  # no worker yet: it cannot have run
            await client.run("record", [1], timeout=0.5)
        cluster.worker("w", 2)
        with pytest.raises(JobFailed) as failed:
            await client.run("fail_until", [99], max_retries=0, timeout=30)
        assert failed.value.status == "FAILED"
        with pytest.raises(RequestRefused):
            await client.run("record", [1], depends_on=[10**9], timeout=30)
        # a child of the failed job ends UPSTREAM_FAILED in the same commit that creates it
        child = await client.submit_and_wait(
            [job_spec("record", [2], depends_on=[failed.value.job_id])], timeout=30
        )
        assert child[0].status == "UPSTREAM_FAILED"
        assert client._waits == {}


async def test_a_known_idempotency_key_answers_with_the_existing_jobs_outcome(
    cluster: Cluster,
) -> None:
    cluster.start()
    cluster.worker("w", 2)
    async with cluster.client() as client:
        first = await client.submit_and_wait(
            [job_spec("record", ["once"], idempotency_key="k")], timeout=30
        )
    # A restarted scheduler has the finished job only in SQLite, not in memory.
    cluster.restart_scheduler(signal.SIGTERM)
    with Client(cluster.address, connect_timeout=10) as client:
        again = client.submit_and_wait(
            [job_spec("record", ["twice"], idempotency_key="k")] * 2, timeout=30
        )
    assert [o.job_id for o in again] == [first[0].job_id] * 2
    assert [wire.unpack(o.result) for o in again] == ["once", "once"]


async def test_an_unanswered_submission_raises_scheduler_unreachable(cluster: Cluster) -> None:
    cluster.start()
    async with cluster.client(request_timeout=0.5) as client:
        cluster.scheduler.send_signal(signal.SIGSTOP)
        try:
            with pytest.raises(SchedulerUnreachable):
                await client.run("record", [1], timeout=30)
            assert client._waits == {}
            assert client._submit_waits == {}
        finally:
            cluster.scheduler.send_signal(signal.SIGCONT)


async def test_every_wait_on_one_job_hears_how_it_ended(cluster: Cluster) -> None:
    """Three waits on one running job (two from the same client, one from another) are
    each answered once it ends: the scheduler keeps every waiter of a job."""
    cluster.start()
    cluster.worker("w", 2)
    async with (
        cluster.client() as a,
        cluster.client() as b,
    ):
        [job_id] = await a.submit_many([job_spec("record", [7], {"seconds": 1.0})])
        waits = [a.wait([job_id], timeout=30), a.wait([job_id], timeout=30)]
        outcomes = await asyncio.gather(*waits, b.wait([job_id], timeout=30))
        assert [o[job_id].status for o in outcomes] == ["SUCCEEDED"] * 3
