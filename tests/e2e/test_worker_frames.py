"""Frames a worker builds stay within the protocol's limits on real processes: a 100 KB
exception message and a 9 MB result each fail their own job clearly, never the innocent
job reported beside them, and nothing stays RUNNING."""

from __future__ import annotations

import pytest

from tests.helpers.cluster import Cluster
from transport import protocol as wire

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("pool", ["thread", "process"])
async def test_an_oversized_error_or_result_fails_alone(cluster: Cluster, pool: str) -> None:
    cluster.start()
    cluster.worker("w", 4, "--pool", pool)
    async with cluster.client() as client:
        loud = await client.submit("shout", [100_000], max_retries=0)
        big = await client.submit("hoard", [9 * 1024 * 1024], max_retries=0)
        innocent = [await client.submit("record", [i], max_retries=0) for i in range(2)]
        outcomes = await client.wait([loud, big, *innocent], timeout=30)
        status = await client.status()
    assert [outcomes[j].status for j in innocent] == ["SUCCEEDED", "SUCCEEDED"]
    assert [wire.unpack(outcomes[j].result) for j in innocent] == [0, 1]
    assert outcomes[loud].status == "FAILED"
    assert "characters cut" in (outcomes[loud].error or "")
    assert outcomes[big].status == "FAILED"
    assert "exceeds the frame limit" in (outcomes[big].error or "")
    assert status.jobs.get("RUNNING", 0) == 0
