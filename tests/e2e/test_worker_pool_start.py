"""A worker starts its process pool (a fork server, its resource tracker and a first child)
only when one of its tasks is sync and would run there: a worker whose tasks are all async
is one process."""

from __future__ import annotations

import pytest

from tests.helpers.cluster import ASYNC_TASKS, LEDGER_TASKS, Cluster
from tests.helpers.procs import children_of

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    ("tasks", "job", "pooled"),
    [(ASYNC_TASKS, ("async.echo", [3]), False), (LEDGER_TASKS, ("add", [1, 2]), True)],
    ids=["all async", "a sync task"],
)
async def test_a_worker_starts_a_process_pool_only_for_a_sync_task(
    cluster: Cluster, tasks: str, job: tuple[str, list[int]], pooled: bool
) -> None:
    cluster.start()
    worker = cluster.worker("w", 2, tasks=tasks)
    async with cluster.client() as client:
        job_id = await client.submit(*job, max_retries=0)
        assert await client.result(job_id, timeout=30) == 3
    # the pool is started before the worker's hello, so before it could take the job
    assert bool(children_of(worker.pid)) == pooled, children_of(worker.pid)
