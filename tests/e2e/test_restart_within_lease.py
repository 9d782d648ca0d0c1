"""A scheduler restart within the lease keeps the running jobs: their workers say hello
again, claim them and keep running them under the same fencing token, and results
finished while the scheduler was away commit when it is back. Real processes, SIGKILL,
and the ledger the tasks write themselves. The scheduler runs with a 5 s lease here (the
default), so a restart of a second or two is well within it."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest
import zmq

from actors.client import AsyncClient
from tests.helpers.cluster import Cluster
from tests.helpers.ledger_tasks import completed, read_ledger
from tests.helpers.waiting import until_running, until_started
from transport import protocol as wire

pytestmark = pytest.mark.slow

LEASE_5S = ("--lease", "5", "--lease-grace", "1")


async def _all_running(
    client: AsyncClient, ids: list[int], ledger: str, timeout: float = 20.0
) -> None:
    """RUNNING in the scheduler and started by their handlers (see until_started)."""
    for job_id in ids:
        await until_running(client, job_id, timeout=timeout)
        await until_started(ledger, job_id, timeout=timeout)


async def test_running_jobs_survive_a_restart_of_one_and_a_half_seconds(
    cluster: Cluster,
) -> None:
    cluster.start(*LEASE_5S)
    cluster.worker("left", 2)
    cluster.worker("right", 2)
    async with cluster.client() as client:
        ids = [
            await client.submit("record", [i], {"seconds": 3.0}, max_retries=0) for i in range(4)
        ]
        await _all_running(client, ids, cluster.ledger)
        cluster.stop_scheduler()
        await asyncio.sleep(1.5)  # the outage itself, not a wait for a condition
        cluster.start_scheduler()
        outcomes = await client.wait(ids, timeout=60)
        views = [await client.job(job_id) for job_id in ids]
    assert {o.status for o in outcomes.values()} == {"SUCCEEDED"}, outcomes
    for view in views:
        assert view is not None
        assert (view.token, view.attempts) == (1, 1), "kept by its worker, not reclaimed"
    executions = Counter(r["job"] for r in read_ledger(cluster.ledger))
    assert executions == {job_id: 1 for job_id in ids}
    restarted = cluster.logs("scheduler")[1].read_text(errors="replace")
    # The frames that waited during the outage are no error: no warning per frame.
    assert "refused frame" not in restarted
    assert restarted.count("WARNING") <= 2, restarted[-3000:]


async def test_a_sigkilled_scheduler_back_half_a_second_later_keeps_long_jobs(
    cluster: Cluster,
) -> None:
    cluster.start(*LEASE_5S)
    cluster.worker("steady", 3)
    async with cluster.client() as client:
        ids = [
            await client.submit("record", [s], {"seconds": s}, max_retries=0)
            for s in (3.0, 5.5, 8.0)
        ]
        await _all_running(client, ids, cluster.ledger)
        cluster.stop_scheduler()
        await asyncio.sleep(0.5)  # the outage itself
        cluster.start_scheduler()
        outcomes = await client.wait(ids, timeout=60)
        views = [await client.job(job_id) for job_id in ids]
    assert {o.status for o in outcomes.values()} == {"SUCCEEDED"}, outcomes
    for view in views:
        assert view is not None
        assert (view.status, view.token, view.attempts) == ("SUCCEEDED", 1, 1)
    runs = completed(cluster.ledger)
    assert sorted(r["job"] for r in runs) == sorted(ids), "each executed exactly once"
    assert {r["token"] for r in runs} == {1}


async def test_a_result_finished_while_the_scheduler_was_away_commits_when_it_is_back(
    cluster: Cluster,
) -> None:
    cluster.start(*LEASE_5S)
    cluster.worker("steady", 1)
    async with cluster.client() as client:
        job_id = await client.submit("record", ["done away"], {"seconds": 0.5}, max_retries=0)
        await until_started(cluster.ledger, job_id)
        cluster.stop_scheduler()
        deadline = time.monotonic() + 20
        while not completed(cluster.ledger):
            assert time.monotonic() < deadline, "the job never finished"
            await asyncio.sleep(0.05)
        cluster.start_scheduler()
        assert await client.result(job_id, timeout=30) == "done away"
        view = await client.job(job_id)
    assert view is not None
    assert (view.token, view.attempts) == (1, 1)
    assert len(read_ledger(cluster.ledger)) == 1


async def test_a_worker_saying_hello_many_times_keeps_its_lease(cluster: Cluster) -> None:
    cluster.start(*LEASE_5S)
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(cluster.address)
    received: list[wire.Message] = []

    def recv_until(kind: type) -> wire.Message:
        while True:
            assert sock.poll(5000), f"no {kind.__name__} from the scheduler"
            reply = wire.decode_reply(sock.recv())
            received.append(reply)
            if isinstance(reply, kind):
                return reply

    try:
        sock.send(wire.encode(wire.WorkerHello(wire.PROTOCOL_VERSION, "chatty", 1, sent_at=1.0)))
        recv_until(wire.Welcome)
        async with cluster.client() as client:
            job_id = await client.submit("anything", max_retries=0)
            assign = recv_until(wire.Assign)
            assert isinstance(assign, wire.Assign)
            [lease] = assign.assignments
            assert assign.seq > 0
            assert assign.lease_basis == 1.0
            for i in range(30):  # a worker that re-hellos on every hello_first
                hello = wire.WorkerHello(
                    wire.PROTOCOL_VERSION, "chatty", 1, leases=[(job_id, 1)], sent_at=2.0 + i
                )
                sock.send(wire.encode(hello))
            sock.send(wire.encode(wire.Heartbeat([(job_id, 1)], 40.0, assign.seq)))
            recv_until(wire.HeartbeatAck)
            view = await client.job(job_id)
            assert view is not None
            assert (view.status, view.token, view.attempts) == ("RUNNING", 1, 1)
            sock.send(wire.encode(wire.Results([wire.JobResult(job_id, 1, True, wire.pack(7))])))
            ack = recv_until(wire.ResultsAck)
            assert isinstance(ack, wire.ResultsAck)
            assert ack.job_ids == [job_id]
            assert await client.result(job_id, timeout=5) == 7
            view = await client.job(job_id)
    finally:
        sock.close()
    assert view is not None
    assert (view.token, view.attempts) == (1, 1)
    assert not [m for m in received if isinstance(m, wire.StopJob)], "never told to stop"
    assert sum(isinstance(m, wire.Welcome) for m in received) == 31, "each hello is welcomed"
    assert lease.job_id == job_id
