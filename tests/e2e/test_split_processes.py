"""The scheduler-side actors need nothing but messages: the DAG resolver runs in its own
process (`corral dag-resolver`) and the scheduler talks to it over ZeroMQ."""

from __future__ import annotations

import pytest

from actors.client import job_spec
from actors.errors import RequestRefused
from tests.helpers.cluster import Cluster
from tests.helpers.ledger_tasks import read_ledger
from tests.helpers.procs import free_address, wait_for_port

pytestmark = pytest.mark.slow


async def test_workflows_run_with_the_dag_resolver_in_another_process(cluster: Cluster) -> None:
    resolver_address = free_address()
    resolver = cluster.procs.spawn("resolver", "dag-resolver", "--bind", resolver_address)
    wait_for_port(resolver_address, resolver)
    cluster.start("--dag-resolver", resolver_address)
    cluster.worker("w0", 3)
    async with cluster.client() as client:
        _, ids = await client.submit_workflow(
            {
                "a": (job_spec("step", [0.1]), []),
                "b": (job_spec("step"), ["a"]),
                "c": (job_spec("step"), ["a"]),
                "d": (job_spec("step"), ["b", "c"]),
            }
        )
        result = await client.result(ids["d"], timeout=30)
        with pytest.raises(RequestRefused, match="cycle: x -> y -> x"):
            await client.submit_workflow(
                {"x": (job_spec("step"), ["y"]), "y": (job_spec("step"), ["x"])}
            )
        bad = await client.submit("fail_until", [9], max_retries=0)
        child = await client.submit("record", ["never"], depends_on=[bad])
        doomed = (await client.wait([child], timeout=30))[child]
    assert sorted(result["parents"]) == ["b", "c"]
    runs = {r["job"]: r for r in read_ledger(cluster.ledger)}
    assert runs[ids["a"]]["end"] < min(runs[ids["b"]]["start"], runs[ids["c"]]["start"])
    assert max(runs[ids["b"]]["end"], runs[ids["c"]]["end"]) < runs[ids["d"]]["start"]
    assert doomed.status == "UPSTREAM_FAILED"
    assert resolver.poll() is None, "the resolver process is still serving"
