"""Workers and clients given several scheduler addresses follow the leader, with real
processes: `corral scheduler` (SQLite) as the leader, a fake standby in the test (a real
ZeroMQ ROUTER answering every frame with NotLeader naming the leader), worker processes
and the SDK or the `corral` command as clients. The failover path the standby schedulers
use is played here by a scheduler SIGKILLed and replaced by another process, on another
address, on the same database, within the lease: the worker finds it through its list
and the new scheduler adopts the running job (same fencing token, one execution)."""

from __future__ import annotations

import asyncio
import os
import threading
import time

import pytest

from actors.client import AsyncClient, Client
from actors.errors import ConfigError, SchedulerUnreachable
from tests.helpers.cluster import Cluster
from tests.helpers.ledger_tasks import completed, read_ledger
from tests.helpers.procs import corral, free_address
from tests.helpers.standby import standby
from tests.helpers.waiting import until_running, until_started, until_workers
from transport import protocol as wire

pytestmark = pytest.mark.slow

LEASE_5S = ("--lease", "5", "--lease-grace", "1")


async def until_logged(cluster: Cluster, label: str, text: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in cluster.log(label):
        assert time.monotonic() < deadline, f"{label} never logged {text!r}"
        await asyncio.sleep(0.05)


async def test_a_worker_and_a_client_given_a_standby_first_work_with_the_leader(
    cluster: Cluster,
) -> None:
    cluster.start()
    with standby(cluster.address) as fake:
        both = f"{fake.address},{cluster.address}"
        cluster.worker("follower", 2, connect=both)
        async with AsyncClient(both, connect_timeout=10) as client:
            assert client.address == cluster.address
            await until_workers(client, {"follower"})
            assert await client.run("record", ["led"], timeout=30) == "led"
        assert fake.count(wire.WorkerHello) >= 1
        assert fake.count(wire.ClientHello) >= 1
    assert f"is a standby; following the leader at {cluster.address}" in cluster.log("follower")


async def test_a_leader_named_outside_the_list_is_followed(cluster: Cluster) -> None:
    cluster.start()
    with standby(cluster.address) as fake:
        cluster.worker("follower", 1, connect=fake.address)
        async with AsyncClient(fake.address, connect_timeout=10) as client:
            await until_workers(client, {"follower"})
            assert await client.run("record", [3], timeout=30) == 3


def test_the_blocking_client_takes_a_list_and_follows_the_leader(cluster: Cluster) -> None:
    cluster.start(workers=1)
    with standby(cluster.address) as fake, Client([fake.address, cluster.address]) as client:
        assert client.run("record", ["sync"], timeout=30) == "sync"
    threads = threading.active_count()
    with pytest.raises(ConfigError, match="'nope' is not allowed"):
        Client([cluster.address, "nope"])
    assert threading.active_count() == threads, "no event-loop thread left behind"


def test_the_command_line_takes_a_list_and_follows_the_leader(cluster: Cluster) -> None:
    cluster.start(workers=1)
    with standby(cluster.address) as fake:
        both = f"{fake.address},{cluster.address}"
        waited = corral("submit", "record", "[7]", "--wait", "--connect", both)
        assert waited.returncode == 0, waited.stderr
        assert waited.stdout.split() == ["1", "SUCCEEDED", "7"]
        env = {**os.environ, "CORRAL_ADDRESS": both}
        listed = corral("jobs", "--json", env=env)
        assert listed.returncode == 0, listed.stderr
        assert '"SUCCEEDED"' in listed.stdout


async def test_a_worker_follows_its_scheduler_to_another_address_keeping_its_running_job(
    cluster: Cluster,
) -> None:
    cluster.start(*LEASE_5S)
    other = free_address()
    both = f"{cluster.address},{other}"
    cluster.worker("steady", 2, connect=both)
    async with AsyncClient(both, connect_timeout=10) as client:
        ids = [
            await client.submit("record", [s], {"seconds": s}, max_retries=0) for s in (4.0, 6.0)
        ]
        for job_id in ids:
            await until_running(client, job_id)
            await until_started(cluster.ledger, job_id)
        cluster.stop_scheduler()  # SIGKILL
        # Its replacement on another machine, on the same database, within the lease.
        cluster.procs.scheduler(other, cluster.db, *LEASE_5S)
        outcomes = await client.wait(ids, timeout=60)
        views = [await client.job(job_id) for job_id in ids]
        assert client.address == other
    assert {o.status for o in outcomes.values()} == {"SUCCEEDED"}, outcomes
    for view in views:
        assert view is not None
        assert (view.status, view.token, view.attempts) == ("SUCCEEDED", 1, 1), "adopted"
    runs = completed(cluster.ledger)
    assert sorted(r["job"] for r in runs) == sorted(ids), "each executed exactly once"
    assert {r["token"] for r in runs} == {1}
    assert "trying another scheduler" in cluster.log("steady")


async def test_with_no_scheduler_answering_the_worker_fences_and_never_runs_a_stale_job(
    cluster: Cluster,
) -> None:
    cluster.start()  # the fast test timings: a lease of 1 s, grace 0.4 s
    other = free_address()
    both = f"{cluster.address},{other}"
    cluster.worker("lonely", 1, connect=both)
    async with AsyncClient(both, connect_timeout=10) as client:
        job_id = await client.submit("bait", [60.0, 0.1], max_retries=1)
        await until_running(client, job_id)
        await until_started(cluster.ledger, job_id)
        cluster.stop_scheduler()  # SIGKILL, and nobody answers at either address
        await until_logged(cluster, "lonely", "(self-fencing)")
        await until_logged(cluster, "lonely", "no scheduler has answered at")
        cluster.procs.scheduler(other, cluster.db)
        assert await client.result(job_id, timeout=60) == 2, "run again under a new token"
    runs = read_ledger(cluster.ledger)
    assert [(r["token"], r["end"] is not None) for r in runs] == [(1, False), (2, True)]


async def test_a_client_with_nobody_answering_at_any_address_is_told_so() -> None:
    dead = [free_address(), free_address()]
    with pytest.raises(SchedulerUnreachable, match=f"at {dead[0]} or {dead[1]} within"):
        async with AsyncClient(dead, connect_timeout=1.0):
            pass
    done = corral("status", "--once", "--connect", ",".join(dead))
    assert done.returncode == 1
    assert f"no scheduler answered at {dead[0]} or {dead[1]}" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("args", "env", "bad"),
    [
        (["worker", "tasks", "--connect", "tcp://127.0.0.1:5555,http://x"], {}, "http://x"),
        (["status", "--connect", "tcp://127.0.0.1:0"], {}, "tcp://127.0.0.1:0"),
        (["jobs"], {"CORRAL_ADDRESS": "tcp://127.0.0.1:5555,tcp://b"}, "tcp://b"),
        (["jobs"], {"CORRAL_CONNECT": " , "}, " , "),
    ],
)
def test_a_bad_scheduler_address_is_one_line_and_exit_2(
    args: list[str], env: dict[str, str], bad: str
) -> None:
    done = corral(*args, env={**os.environ, **env})
    assert done.returncode == 2, done.stderr
    assert f"{bad!r} is not allowed: a scheduler address" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
