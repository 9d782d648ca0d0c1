"""Retention (issue 17) on real processes, with a scheduler started with a tiny period
(``--retention 2s``): finished jobs and their workflows disappear, live jobs and the parents
of live jobs stay, dead letters keep their longer period, and an idempotency key creates a
new job once its job was purged. The database is read by another process while the
scheduler runs, as the checks here do with the ``sqlite3`` module."""

from __future__ import annotations

import sqlite3
import subprocess
import sys

import pytest

from actors.client import AsyncClient, job_spec
from tests.helpers.cluster import Cluster
from tests.helpers.waiting import until, until_workers

pytestmark = pytest.mark.slow


def stored_ids(db: str) -> set[int]:
    """The job ids in the file, read by another process while the scheduler runs."""
    script = (
        "import sqlite3, sys; c = sqlite3.connect(f'file:{sys.argv[1]}?mode=ro', uri=True); "
        "print(' '.join(str(r[0]) for r in c.execute('SELECT id FROM jobs')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, db], capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 0, out.stderr
    return {int(x) for x in out.stdout.split()}


async def gone(client: AsyncClient, job_id: int) -> bool:
    return await client.job(job_id) is None


async def test_finished_jobs_are_purged_and_live_ones_and_their_parents_stay(
    cluster: Cluster,
) -> None:
    cluster.start("--retention", "2s", "--failed-retention", "1h", workers=1)
    async with cluster.client() as client:
        await until_workers(client, {"w0"})
        done = await client.submit("record", ["done"], idempotency_key="once")
        assert await client.result(done, timeout=30) == "done"
        failed = await client.submit("fail_until", [5], max_retries=0)
        await client.wait([failed], timeout=30)
        parent = await client.submit("record", ["parent"])
        assert await client.result(parent, timeout=30) == "parent"
        # A child that waits for its time after its parent succeeded: live, and it will
        # need the parent's result when it runs.
        [child] = await client.submit_many(
            [job_spec("record", ["child"], depends_on=[parent], delay=3600)]
        )
        flow, by_name = await client.submit_workflow(
            {"a": (job_spec("record", ["a"]), []), "b": (job_spec("record", ["b"]), ["a"])}
        )
        steps = [by_name["a"], by_name["b"]]
        await client.wait(steps, timeout=30)
        # The newest job and workflow are never purged (their ids seed the next ones).
        _, newest = await client.submit_workflow({"w": (job_spec("record", delay=3600), [])})
        waiting = newest["w"]
        await until(lambda: gone(client, done), timeout=30)
        await until(lambda: gone(client, steps[1]), timeout=30)
        assert await client.workflow(flow) is None, "the workflow went with its last step"
        for kept in (failed, parent, child, waiting):
            view = await client.job(kept)
            assert view is not None, f"job {kept} was purged"
        assert (await client.job(failed)).status == "FAILED"  # type: ignore[union-attr]
        assert {failed, parent, child, waiting} <= stored_ids(str(cluster.db))
        assert done not in stored_ids(str(cluster.db))
        # The key's job is gone: the same key now creates a new job.
        again = await client.submit("record", ["again"], idempotency_key="once")
        assert again != done
        assert await client.result(again, timeout=30) == "again"
        assert await client.submit("record", ["x"], idempotency_key="once") == again


async def test_a_parent_stays_while_its_child_waits_and_goes_after(cluster: Cluster) -> None:
    cluster.start("--retention", "2s", workers=1)
    async with cluster.client() as client:
        await until_workers(client, {"w0"})
        parent = await client.submit("record", ["p"])
        assert await client.result(parent, timeout=30) == "p"
        [child] = await client.submit_many(
            [job_spec("record", ["c"], depends_on=[parent], delay=4)]
        )
        newest = await client.submit("record", ["n"], delay=3600)  # keeps the ids' high mark
        assert await client.result(child, timeout=30) == "c"
        view = await client.job(child)
        assert view is not None
        assert view.status == "SUCCEEDED"
        await until(lambda: gone(client, parent), timeout=30)
        await until(lambda: gone(client, child), timeout=30)
        assert await client.job(newest) is not None


async def test_the_database_can_be_read_while_the_scheduler_runs(cluster: Cluster) -> None:
    cluster.start(workers=1)
    async with cluster.client() as client:
        await until_workers(client, {"w0"})
        ids = await client.submit_many([job_spec("record", [i]) for i in range(20)])
        await client.wait(ids, timeout=30)
        conn = sqlite3.connect(f"file:{cluster.db}?mode=ro", uri=True, timeout=5)
        try:
            counts = dict(conn.execute("SELECT status, count(*) FROM jobs GROUP BY 1"))
        finally:
            conn.close()
        assert counts == {"SUCCEEDED": 20}
        assert stored_ids(str(cluster.db)) == set(ids)
        # The scheduler goes on committing while (and after) others read.
        more = await client.submit("record", ["after"])
        assert await client.result(more, timeout=30) == "after"
