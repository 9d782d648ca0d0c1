"""How a lease ends without success, on a real scheduler: a result that says a retry cannot
help fails the job at once, and a worker leaving while it still holds jobs releases them
at once with the reason "worker stopped" (not after the lease plus grace)."""

from __future__ import annotations

import pytest

from tests.e2e.test_frame_limits_and_reconciliation import FakeWorker
from tests.helpers.cluster import Cluster
from transport import protocol as wire

pytestmark = pytest.mark.slow


async def test_a_result_that_says_do_not_retry_fails_the_job_whatever_attempts_remain(
    cluster: Cluster,
) -> None:
    cluster.start()
    fake = FakeWorker(cluster.address)
    try:
        async with cluster.client() as client:
            job_id = await client.submit("record", ["x"], max_retries=5)
            fake.recv_until(wire.Assign)
            error = "TypeError: record() got an unexpected keyword argument 'colour'"
            fake.send(wire.Results([wire.JobResult(job_id, 1, False, error=error, retry=False)]))
            outcome = (await client.wait([job_id], timeout=10))[job_id]
            view = await client.job(job_id)
    finally:
        fake.close()
    assert (outcome.status, outcome.error) == ("FAILED", error)
    assert view is not None
    assert view.attempts == 1


async def test_a_worker_leaving_with_jobs_releases_them_at_once_as_worker_stopped(
    cluster: Cluster,
) -> None:
    # A long lease: were the jobs released only on expiry, the test would time out first.
    cluster.start("--lease", "30", "--lease-grace", "5")
    fake = FakeWorker(cluster.address)
    try:
        async with cluster.client() as client:
            job_id = await client.submit("record", ["x"], max_retries=0)
            fake.recv_until(wire.Assign)
            fake.send(wire.Goodbye())  # second Ctrl-C: it stops without finishing the job
            # Within 10 s, far less than the lease + grace of 35 s.
            outcome = (await client.wait([job_id], timeout=10))[job_id]
            view = await client.job(job_id)
    finally:
        fake.close()
    assert outcome.status == "FAILED"
    assert view is not None
    assert [a.outcome for a in view.history] == ["lost"]
    assert (view.history[0].error or "").startswith("worker stopped")
