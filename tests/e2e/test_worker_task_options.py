"""A failure a retry cannot cure ends the job at once (JobResult.retry=False): an exception
outside the task's ``retry_on``, arguments that do not fit the function, the task's own
``max_retries`` reached. The worker side is proven against a fake scheduler in
tests/actors/test_worker_protocol.py; these run the real scheduler, which must honour
the flag (the scheduler branch)."""

from __future__ import annotations

import pytest

from tests.helpers.cluster import Cluster

pytestmark = [
    pytest.mark.slow,
]


async def test_failures_a_retry_cannot_cure_end_the_job_at_once(cluster: Cluster) -> None:
    cluster.start()
    cluster.worker("w", 2)
    async with cluster.client() as client:
        bad_input = await client.submit("flaky_io", ["value"], max_retries=5)
        unbound = await client.submit("add", [1], max_retries=5)
        io = await client.submit("flaky_io", ["io"], max_retries=5)
        outcomes = await client.wait([bad_input, unbound, io], timeout=60)
        views = {j: await client.job(j) for j in (bad_input, unbound, io)}
    assert {o.status for o in outcomes.values()} == {"FAILED"}
    attempts = {j: v.attempts for j, v in views.items() if v is not None}
    assert attempts == {bad_input: 1, unbound: 1, io: 3}, "task max_retries=2 caps the job's 5"
    assert "missing a required argument: 'b'" in (outcomes[unbound].error or "")
