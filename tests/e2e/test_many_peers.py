"""More peers than the scheduler's soft limit on open files (``ulimit -n``): each connection
takes a file descriptor, and a scheduler stuck at its soft limit (often 1,024) stops
accepting connections, so a new client or worker gets no answer until others leave. The
scheduler raises its soft limit to the hard one at start (``actors.cli.open_files``), and
warns when even that leaves room for few peers."""

from __future__ import annotations

import asyncio
import sys

from actors.cli.open_files import FEW, raise_open_files
from bench.harness import FAST_TIMINGS, wait_for_port
from tests.helpers.cluster import Cluster
from tests.helpers.leaders import hello
from tests.helpers.procs import Procs
from transport import connect
from transport import protocol as wire

PEERS = 300  # past a soft limit of 128; the test process holds about two descriptors each


def limited(soft: int, hard: int) -> list[str]:
    """A ``wrap`` (``Procs.spawn``) that starts the process with these open-file limits."""
    code = (
        "import os, resource, sys; "
        f"resource.setrlimit(resource.RLIMIT_NOFILE, ({soft}, {hard})); "
        "os.execv(sys.argv[1], sys.argv[1:])"
    )
    return [sys.executable, "-c", code]


def scheduler(procs: Procs, cluster: Cluster, soft: int, hard: int) -> None:
    proc = procs.spawn(
        "scheduler",
        "scheduler",
        "--bind",
        cluster.address,
        "--db",
        str(cluster.db),
        *FAST_TIMINGS,
        wrap=limited(soft, hard),
    )
    wait_for_port(cluster.address, proc)


async def welcomed(address: str, peers: int, timeout: float) -> int:
    """How many of ``peers`` new connections saying hello at once were welcomed within
    ``timeout``."""
    replies = await asyncio.gather(*(hello(address, timeout) for _ in range(peers)))
    return sum(isinstance(reply, wire.Welcome) for reply in replies)


async def test_a_scheduler_with_a_low_soft_limit_serves_more_peers_than_it(
    procs: Procs, cluster: Cluster
) -> None:
    raise_open_files()  # this test process holds the peers' ends
    scheduler(procs, cluster, soft=128, hard=4096)
    cluster.worker("w0", 2)
    links = [connect(cluster.address) for _ in range(PEERS)]  # held idle throughout
    try:
        assert await welcomed(cluster.address, PEERS, timeout=60.0) == PEERS
        async with cluster.client() as client:
            job_id = await client.submit("add", [2, 3])
            outcome = (await client.wait([job_id], timeout=60.0))[job_id]
        assert outcome.status == "SUCCEEDED", outcome
    finally:
        await asyncio.gather(*(link.close() for link in links))
    assert "WARNING" not in procs.log_text(), "a hard limit of 4,096 is enough: no warning"


async def test_a_scheduler_whose_hard_limit_is_low_says_so_at_start(
    procs: Procs, cluster: Cluster
) -> None:
    scheduler(procs, cluster, soft=256, hard=FEW - 1)
    log = procs.log_text()
    assert f"may hold only {FEW - 1} open files" in log, log
    assert "raise the hard limit" in log
