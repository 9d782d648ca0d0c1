"""The contract, proven on real processes: leases, fencing tokens, self-fencing zombies,
heartbeats, reclaim, and a CPU-bound handler that keeps its lease. Timings are the fast test
set (heartbeat 0.2 s, lease 1.0 s, grace 0.4 s)."""

from __future__ import annotations

import asyncio
import signal
import time

import pytest

from tests.helpers.cluster import Cluster
from tests.helpers.ledger_tasks import read_ledger
from tests.helpers.waiting import until_running, until_started
from transport import protocol as wire

pytestmark = pytest.mark.slow


async def until(predicate, timeout: float = 20.0, every: float = 0.05):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await predicate()
        if value:
            return value
        await asyncio.sleep(every)
    raise TimeoutError("condition not met in time")


async def test_a_stopped_zombie_is_reclaimed_fenced_and_its_late_result_refused(
    cluster: Cluster,
) -> None:
    cluster.start()
    zombie = cluster.worker("zombie", 1)
    async with cluster.client() as client:
        job_id = await client.submit("bait", [30.0, 0.1], max_retries=5)

        await until_running(client, job_id, "zombie")
        await asyncio.sleep(0.3)
        zombie.send_signal(signal.SIGSTOP)
        cluster.worker("rescuer", 1)
        outcome = (await client.wait([job_id], timeout=30))[job_id]
        assert outcome.status == "SUCCEEDED"
        assert wire.unpack(outcome.result) == 2, "the committed result is the new holder's"

        zombie.send_signal(signal.SIGCONT)

        async def refused() -> bool:
            return (await client.status()).counters.get("refused_results", 0) >= 1

        await until(refused, timeout=10)
        view = await client.job(job_id)
    assert view is not None
    assert (view.status, view.token, view.worker) == ("SUCCEEDED", 2, "rescuer")
    runs = read_ledger(cluster.ledger)
    zombie_runs = [r for r in runs if r["worker"] == "zombie"]
    assert len(zombie_runs) == 1
    assert zombie_runs[0]["token"] == 1
    assert zombie_runs[0]["end"] is None, "the zombie's handler was stopped by self-fencing"
    rescuer_runs = [r for r in runs if r["worker"] == "rescuer"]
    assert [r["token"] for r in rescuer_runs] == [2]
    assert "self-fencing" in cluster.log("zombie")


async def test_a_cpu_spinning_handler_keeps_its_lease_for_three_lease_times(
    cluster: Cluster,
) -> None:
    cluster.start()
    cluster.worker("spinner", 1)
    cluster.worker("idle", 1)
    async with cluster.client() as client:
        job_id = await client.submit("spin", [3.0], max_retries=3)
        outcome = (await client.wait([job_id], timeout=30))[job_id]
        view = await client.job(job_id)
    assert outcome.status == "SUCCEEDED"
    assert view is not None
    assert (view.attempts, view.token) == (1, 1), "never reclaimed or reassigned"
    assert len(read_ledger(cluster.ledger)) == 1


async def test_a_cpu_bound_task_in_a_process_pool_keeps_its_lease_and_can_be_stopped(
    cluster: Cluster,
) -> None:
    cluster.start()
    cluster.worker("pool", 2, "--pool", "process")
    async with cluster.client() as client:
        spin = await client.submit("spin", [2.5], max_retries=0)
        long = await client.submit("record", ["never"], {"seconds": 30.0}, max_retries=0)

        await until_started(cluster.ledger, long)  # its handler runs in a child now
        stopped_at = time.monotonic()
        assert (await client.cancel([long]))[long] == "CANCELLED"
        outcomes = await client.wait([spin, long], timeout=30)
        view = await client.job(spin)
        after = await client.submit("record", ["after"], max_retries=0)
        assert await client.result(after, timeout=10) == "after"
    assert outcomes[spin].status == "SUCCEEDED"
    assert view is not None
    assert view.attempts == 1
    runs = read_ledger(cluster.ledger)
    stopped = [r for r in runs if r["job"] == long]
    assert len(stopped) == 1
    assert stopped[0]["end"] is None, "the cancelled handler's process was killed"
    assert time.monotonic() - stopped_at < 30


async def test_a_stale_fencing_token_is_refused_and_changes_nothing(cluster: Cluster) -> None:
    import zmq

    cluster.start()
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(cluster.address)

    def recv_until(kind: type) -> wire.Message:
        while True:
            assert sock.poll(5000), f"no {kind.__name__} from the scheduler"
            reply = wire.decode_reply(sock.recv())
            if isinstance(reply, kind):
                return reply

    try:
        # Two slots: its heartbeat below lists two leases (more than its slots is refused).
        sock.send(wire.encode(wire.WorkerHello(wire.PROTOCOL_VERSION, "fake", 2)))
        recv_until(wire.Welcome)
        async with cluster.client() as client:
            job_id = await client.submit("anything")
            assign = recv_until(wire.Assign)
            [lease] = assign.assignments  # type: ignore[attr-defined]
            assert (lease.job_id, lease.token) == (job_id, 1)

            sock.send(
                wire.encode(wire.Results([wire.JobResult(job_id, 0, True, wire.pack("stale"))]))
            )
            ack = recv_until(wire.ResultsAck)
            assert ack.refused == [job_id]  # type: ignore[attr-defined]
            view = await client.job(job_id)
            assert view is not None
            assert view.status == "RUNNING", "a stale result changes nothing"

            sock.send(wire.encode(wire.Progress([(job_id, 0, 0.5, "stale token")])))
            sock.send(wire.encode(wire.Heartbeat([(job_id, 1), (999, 7)], 1.0)))
            stop = recv_until(wire.StopJob)
            assert (stop.job_id, stop.token) == (999, 7)  # type: ignore[attr-defined]

            sock.send(wire.encode(wire.Results([wire.JobResult(job_id, 1, True, wire.pack("ok"))])))
            ack = recv_until(wire.ResultsAck)
            assert ack.job_ids == [job_id]  # type: ignore[attr-defined]
            assert await client.result(job_id, timeout=5) == "ok"

            sock.send(
                wire.encode(wire.Results([wire.JobResult(job_id, 1, True, wire.pack("again"))]))
            )
            ack = recv_until(wire.ResultsAck)
            assert ack.refused == [job_id], "a job's result is never committed twice"  # type: ignore[attr-defined]
            assert await client.result(job_id, timeout=5) == "ok"
            status = await client.status()
            assert status.counters["refused_results"] == 2
            assert status.counters["refused_leases"] == 1
            assert status.counters["refused_progress"] == 1
    finally:
        sock.close()


async def test_a_killed_workers_job_runs_again_elsewhere_after_the_lease(cluster: Cluster) -> None:
    cluster.start()
    victim = cluster.worker("victim", 1)
    async with cluster.client() as client:
        job_id = await client.submit("bait", [30.0, 0.1], max_retries=3)

        await until_running(client, job_id)
        cluster.worker("heir", 1)
        victim.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        outcome = (await client.wait([job_id], timeout=30))[job_id]
        reclaimed_after = time.monotonic() - killed_at
        view = await client.job(job_id)
    assert outcome.status == "SUCCEEDED"
    assert view is not None
    assert view.worker == "heir"
    assert [a.outcome for a in view.history] == ["lost", "succeeded"]
    assert "victim lost" in (view.history[0].error or "")
    assert reclaimed_after < 10, "a crashed worker's job runs again within seconds"
