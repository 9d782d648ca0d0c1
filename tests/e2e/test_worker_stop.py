"""Stopping a worker: the first SIGINT/SIGTERM drains (held jobs finish), a second one or
the drain timeout stops the handlers at once and leaves, exit status 1, without a fake
result: the scheduler reclaims the abandoned jobs."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time

import pytest

from tests.e2e.test_worker_leases import ticks, until
from tests.helpers.cluster import Cluster
from tests.helpers.ledger_tasks import read_ledger
from tests.helpers.waiting import until_running, until_started
from transport import protocol as wire

pytestmark = pytest.mark.slow


async def exited(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> int:
    async def done() -> bool:
        return proc.poll() is not None

    await until(done, timeout)
    return proc.returncode


async def test_the_first_sigint_lets_held_jobs_finish(cluster: Cluster) -> None:
    cluster.start()
    worker = cluster.worker("w", 1)
    async with cluster.client() as client:
        job_id = await client.submit("record", ["kept"], {"seconds": 1.0}, max_retries=0)
        await until_started(cluster.ledger, job_id)  # held by its handler, not in flight
        worker.send_signal(signal.SIGINT)
        assert await client.result(job_id, timeout=30) == "kept"
        assert await exited(worker) == 0


@pytest.mark.parametrize("how", ["second signal", "drain timeout"])
async def test_a_hard_stop_leaves_at_once_without_a_result(cluster: Cluster, how: str) -> None:
    cluster.start()
    extra = ("--drain-timeout", "0.5") if how == "drain timeout" else ()
    worker = cluster.worker("w", 1, "--pool", "thread", *extra)
    async with cluster.client() as client:
        job_id = await client.submit("scribble", [60.0], max_retries=5)
        await until_running(client, job_id, "w")

        async def writing() -> bool:
            return bool(ticks(cluster, "w", job_id, 1))

        await until(writing)
        worker.send_signal(signal.SIGINT)
        if how == "second signal":
            await asyncio.sleep(0.2)  # two separate signals, as two Ctrl-C presses are
            worker.send_signal(signal.SIGINT)
        assert await exited(worker) == 1
        left_at = time.time()
        view = await client.job(job_id)
    assert view is not None
    assert view.status != "FAILED"
    assert all("stopped" not in (a.error or "") or a.outcome != "error" for a in view.history)
    assert not [t for t in ticks(cluster, "w", job_id, 1) if t > left_at], "its handler stopped"
    assert [r["end"] for r in read_ledger(cluster.ledger)] == [None]
    said = {"second signal": "second stop signal", "drain timeout": "drain timed out"}[how]
    assert f"{said}: stopping 1 unfinished job(s) {job_id}" in cluster.log("w")


async def test_a_goodbye_crossing_an_assign_requeues_the_job_without_an_attempt(
    cluster: Cluster,
) -> None:
    """A worker stopped (Ctrl-C, nothing running) says Goodbye while an Assign is on its
    way to it: it never started that job, which must run elsewhere, not fail as 'worker
    stopped' (with max_retries=0 it used to end FAILED)."""
    import zmq

    cluster.start()
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(cluster.address)
    try:
        sock.send(wire.encode(wire.WorkerHello(wire.PROTOCOL_VERSION, "leaving", 1)))
        assert sock.poll(5000)
        assert isinstance(wire.decode_reply(sock.recv()), wire.Welcome)
        async with cluster.client() as client:
            job_id = await client.submit("record", ["elsewhere"], max_retries=0)
            assert sock.poll(5000), "the Assign was sent"  # and is left unread: in flight
            sock.send(wire.encode(wire.Goodbye([])))
            cluster.worker("heir", 1)
            assert await client.result(job_id, timeout=20) == "elsewhere"
            view = await client.job(job_id)
        assert view is not None
        assert (view.worker, view.attempts) == ("heir", 1), "no attempt counted for it"
        assert all("worker stopped" not in (a.error or "") for a in view.history)
    finally:
        sock.close()
