"""CURVE with real processes: a scheduler with a key folder serves only the keys in it.
Workers and the `corral` command with their keys work as without; a worker or client
without keys, or with a key the folder does not list, gets nothing at all; `corral
keygen` writes what the folder needs; binding an address other hosts reach without keys
is refused with one line, and --insecure starts with a warning."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Callable

import pytest

from actors.client import AsyncClient, job_spec
from actors.errors import RequestRefused, SchedulerUnreachable
from actors.keys import client_keys, keygen
from tests.e2e.test_startup import Run, assert_one_line_failure, start_line
from tests.helpers.cluster import Cluster
from tests.helpers.ledger_tasks import read_ledger
from tests.helpers.procs import Procs, corral, free_address
from tests.helpers.waiting import until_running, until_started, until_workers
from transport import connect
from transport import protocol as wire

pytestmark = pytest.mark.slow


async def test_only_the_keys_in_the_folder_are_served(cluster: Cluster) -> None:
    cluster.use_keys()
    cluster.start(workers=1)
    async with cluster.client() as client:  # the admin key
        await until_workers(client, {"w0"})
        job_id = await client.submit("record", ["with keys"])
        assert await client.result(job_id, timeout=30) == "with keys"
    keygen("stranger", cluster.secrets)  # a key pair the folder does not list
    assert cluster.keys is not None
    server = cluster.keys / "scheduler.key"
    for key in (None, cluster.secrets / "stranger.key_secret"):
        kwargs = {} if key is None else {"key": key, "server_key": server}
        with pytest.raises(SchedulerUnreachable):
            async with AsyncClient(cluster.address, connect_timeout=1.0, **kwargs):
                pass
    # A worker without keys never joins (and runs nothing).
    intruder = cluster.procs.spawn(
        "intruder", "worker", "tests.helpers.ledger_tasks", "--connect", cluster.address,
        "--name", "intruder",
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while "no scheduler has answered" not in cluster.log("intruder"):  # it tried for 5 s
        assert time.monotonic() < deadline, cluster.log("intruder")
        await asyncio.sleep(0.1)
    async with cluster.client() as client:
        job_id = await client.submit("record", ["second"])
        assert await client.result(job_id, timeout=30) == "second"
        names = {w.name for w in (await client.status()).workers}
    assert "intruder" not in names
    assert intruder.poll() is None, "it keeps trying, as against a dead address"


def test_the_command_line_uses_its_keys(cluster: Cluster) -> None:
    cluster.use_keys()
    cluster.start(workers=1)
    flags = cluster.key_flags("admin")
    done = corral("submit", "record", "[3]", "--wait", "--connect", cluster.address, *flags)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[1:] == ["SUCCEEDED", "3"]
    env = {
        **os.environ,
        "CORRAL_KEY": flags[1],
        "CORRAL_SERVER_KEY": flags[3],
        "CORRAL_ADDRESS": cluster.address,
    }
    listed = corral("jobs", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    assert '"SUCCEEDED"' in listed.stdout
    keyless = corral("status", "--once", "--connect", cluster.address)
    assert keyless.returncode == 1
    assert "no scheduler answered" in keyless.stderr


def test_keygen_prints_where_it_wrote_and_refuses_to_overwrite(tmp_path: os.PathLike[str]) -> None:
    done = corral("keygen", "w1", "--dir", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert f"public key {tmp_path}/w1.key" in done.stdout
    assert f"secret key {tmp_path}/w1.key_secret" in done.stdout
    again = corral("keygen", "w1", "--dir", str(tmp_path))
    assert again.returncode == 2
    assert "exists already" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1


def test_bad_key_settings_are_one_line(procs: Procs, tmp_path: os.PathLike[str]) -> None:
    run = Run(procs, "scheduler", "--bind", free_address(), "--keys", f"{tmp_path}/none")
    assert_one_line_failure(run, "--keys", "a folder of keys")
    worker = corral("worker", "tests.helpers.ledger_tasks", "--key", f"{tmp_path}/x.key_secret")
    assert worker.returncode == 2
    assert "--key and --server-key go together" in worker.stderr


def test_serving_other_hosts_needs_keys_or_insecure_with_a_warning(procs: Procs) -> None:
    port = free_address().rsplit(":", 1)[1]
    run = Run(procs, "scheduler", "--bind", f"tcp://0.0.0.0:{port}", "--db", f"{procs.tmp}/a.db")
    assert_one_line_failure(run, "--bind", "--keys DIR", "--insecure")
    assert run.proc.returncode == 2
    run = Run(
        procs, "scheduler", "--bind", f"tcp://0.0.0.0:{port}", "--insecure",
        "--db", f"{procs.tmp}/b.db",
    )  # fmt: skip
    assert "corral scheduler on" in start_line(run)
    assert "WARNING: serving tcp://0.0.0.0:" in run.stderr
    assert "without keys (--insecure)" in run.stderr
    status = corral("status", "--once", "--connect", f"tcp://127.0.0.1:{port}")
    assert status.returncode == 0, status.stderr
    assert "WARNING: this scheduler runs --insecure" in " ".join(status.stdout.split())


async def ask_as(
    cluster: Cluster,
    name: str,
    *messages: wire.Message,
    timeout: float = 30.0,
    until: Callable[[list[wire.FromScheduler]], bool] | None = None,
) -> list[wire.FromScheduler]:
    """Send ``messages`` with the key ``name`` on a raw connection; every reply until
    ``until(replies)`` holds (by default: one reply per message), or the timeout."""
    done = until or (lambda replies: len(replies) >= len(messages))
    assert cluster.keys is not None
    keys = client_keys(
        str(cluster.secrets / f"{name}.key_secret"), str(cluster.keys / "scheduler.key")
    )
    link = connect(cluster.address, keys)
    replies: list[wire.FromScheduler] = []
    try:
        for message in messages:
            link.send(wire.encode(message))
        deadline = time.monotonic() + timeout
        while not done(replies) and (left := deadline - time.monotonic()) > 0:
            with contextlib.suppress(TimeoutError):
                for frame in await asyncio.wait_for(link.recv_batch(), left):
                    replies.append(wire.decode_reply(frame))
    finally:
        await link.close()
    return replies


def stopped(replies: list[wire.FromScheduler]) -> bool:
    """A StopJob came: the claim was refused."""
    return any(isinstance(r, wire.StopJob) for r in replies)


def forbidden(replies: list[wire.FromScheduler]) -> list[str]:
    return [r.message for r in replies if isinstance(r, wire.ErrorReply) and r.code == "forbidden"]


async def test_each_key_may_send_only_what_its_role_allows(cluster: Cluster) -> None:
    cluster.use_keys()
    cluster.key("client", "clients")
    cluster.key("robot", "workers")
    cluster.start()
    hello = wire.ClientHello(wire.PROTOCOL_VERSION)
    submit = wire.Submit(1, [job_spec("record", ["from a worker key"])])
    as_worker = await ask_as(cluster, "robot", hello, submit)
    assert forbidden(as_worker) == [
        "a worker key may not send ClientHello",
        "a worker key may not send Submit",
    ]
    worker_hello = wire.WorkerHello(wire.PROTOCOL_VERSION, "fake", 4, ["default"], ["record"])
    requeue = wire.Requeue(2, [], all_failed=True)
    as_client = await ask_as(cluster, "client", worker_hello, hello, requeue)
    assert forbidden(as_client) == [
        "a client key may not send WorkerHello",
        "a client key may not send Requeue",
    ]
    as_admin = await ask_as(cluster, "admin", hello, requeue)
    assert forbidden(as_admin) == []
    assert any(isinstance(r, wire.RequeueReply) for r in as_admin), as_admin
    async with cluster.client() as client:
        assert await client.jobs() == [], "nothing was submitted by the worker key"
        status = await client.status()
        assert "fake" not in {w.name for w in status.workers}


async def test_a_client_with_a_worker_key_is_told_so_at_once_not_that_nobody_answered(
    cluster: Cluster,
) -> None:
    """Its hello is refused ("forbidden"), so no Welcome comes: before, the client waited
    out its connect timeout and blamed an absent scheduler."""
    cluster.use_keys()
    flags = cluster.key("robot", "workers")
    cluster.start()
    started = time.monotonic()
    done = corral("status", "--connect", cluster.address, *flags, env=cluster.procs.env)
    assert done.returncode != 0, done.stdout
    [line] = done.stderr.strip().splitlines()
    assert "forbidden: a worker key may not send ClientHello" in line, line
    assert time.monotonic() - started < 5.0, "said before the 5 s connect timeout"
    assert cluster.keys is not None
    sdk = AsyncClient(
        cluster.address,
        key=cluster.secrets / "robot.key_secret",
        server_key=cluster.keys / "scheduler.key",
    )
    with pytest.raises(RequestRefused, match="a worker key may not send ClientHello"):
        await sdk.connect()


def test_a_worker_with_a_client_key_exits_saying_why_instead_of_retrying_for_ever(
    cluster: Cluster,
) -> None:
    """No scheduler will ever serve it: before, it said hello and logged the refusal once
    a second until killed."""
    cluster.use_keys()
    cluster.key("shopper", "clients")
    cluster.start()
    worker = cluster.worker("shopper", 1)
    assert worker.wait(timeout=30) == 1, cluster.log("shopper")
    refusals = [line for line in cluster.log("shopper").splitlines() if "refuses our key" in line]
    assert len(refusals) == 1, cluster.log("shopper")
    assert "forbidden" not in cluster.log("shopper").replace(refusals[0], "")
    assert "a client key may not send WorkerHello" in refusals[0]


async def test_another_key_under_a_workers_name_claims_none_of_its_leases(cluster: Cluster) -> None:
    cluster.use_keys()
    cluster.key("impostor", "workers")
    cluster.start(workers=1)
    async with cluster.client() as client:
        await until_workers(client, {"w0"})
        job_id = await client.submit("record", ["still w0's"], {"seconds": 1.0})
        await until_running(client, job_id)
        claim = wire.WorkerHello(
            wire.PROTOCOL_VERSION, "w0", 4, ["default"], ["record"], [(job_id, 1)]
        )
        replies = await ask_as(cluster, "impostor", claim, until=stopped)
        stops = [(r.job_id, r.token) for r in replies if isinstance(r, wire.StopJob)]
        assert stops == [(job_id, 1)], replies
        assert await client.result(job_id, timeout=30) == "still w0's"
        view = await client.job(job_id)
        assert view is not None
        assert (view.token, view.attempts) == (1, 1)
        assert view.history[-1].worker == "w0", "shown by name (the lease keeps the key)"


async def test_after_a_restart_only_the_key_a_lease_was_granted_to_can_claim_it(
    cluster: Cluster,
) -> None:
    cluster.use_keys()
    cluster.key("impostor", "workers")
    cluster.start("--lease", "5", "--lease-grace", "1", workers=1)
    async with cluster.client() as client:
        await until_workers(client, {"w0"})
        job_id = await client.submit("record", ["once"], {"seconds": 3.0})
        await until_running(client, job_id)
        await until_started(cluster.ledger, job_id)
    w0 = cluster.workers["w0"]
    w0.send_signal(signal.SIGSTOP)  # so the impostor speaks first to the new scheduler
    try:
        cluster.restart_scheduler()
        claim = wire.WorkerHello(
            wire.PROTOCOL_VERSION, "w0", 4, ["default"], ["record"], [(job_id, 1)]
        )
        replies = await ask_as(cluster, "impostor", claim, until=stopped)
    finally:
        w0.send_signal(signal.SIGCONT)
    stops = [r for r in replies if isinstance(r, wire.StopJob)]
    assert [(s.job_id, s.token) for s in stops] == [(job_id, 1)], replies
    async with cluster.client() as client:
        assert await client.result(job_id, timeout=30) == "once"
        view = await client.job(job_id)
    assert view is not None
    assert (view.token, view.attempts) == (1, 1), "adopted by w0, run once"
    assert [r["token"] for r in read_ledger(cluster.ledger)] == [1]


def client_as(cluster: Cluster, name: str) -> AsyncClient:
    assert cluster.keys is not None
    return AsyncClient(
        cluster.address,
        connect_timeout=10.0,
        key=cluster.secrets / f"{name}.key_secret",
        server_key=cluster.keys / "scheduler.key",
    )


async def test_a_client_key_sees_and_touches_only_the_jobs_it_submitted(cluster: Cluster) -> None:
    cluster.use_keys()
    cluster.key("alice", "clients")
    cluster.key("bob", "clients")
    cluster.start()  # no workers: the jobs stay QUEUED
    async with client_as(cluster, "alice") as alice, client_as(cluster, "bob") as bob:
        mine = await alice.submit("record", ["alice's"], idempotency_key="alice-1")
        theirs = await bob.submit("record", ["bob's"])
        assert await bob.job(mine) is None, "another client's job is as if it did not exist"
        assert [j.job_id for j in await bob.jobs()] == [theirs]
        assert await bob.cancel([mine]) == {mine: "NOT_FOUND"}
        with pytest.raises(RequestRefused, match="no such job"):
            await bob.wait([mine], timeout=5)
        with pytest.raises(RequestRefused, match="is another client's"):
            await bob.submit("record", ["x"], idempotency_key="alice-1")
        with pytest.raises(RequestRefused, match="do not exist"):
            await bob.submit("record", ["x"], depends_on=[mine])
        hello = wire.ClientHello(wire.PROTOCOL_VERSION)
        watches = await ask_as(
            cluster, "bob", hello, wire.Subscribe(8, mine), wire.Subscribe(9, None)
        )
        refused = sorted((r.request_id, r.code) for r in watches if isinstance(r, wire.ErrorReply))
        assert refused == [(8, "not_found"), (9, "not_found")], watches
        searches = [wire.ListJobs(10, key="alice-1"), wire.ListJobs(11, task="record")]
        found = await ask_as(cluster, "bob", hello, *searches)
        listed = {
            r.request_id: [j.job_id for j in r.jobs] for r in found if isinstance(r, wire.JobList)
        }
        assert listed == {10: [], 11: [theirs]}, "alice's key and task are no way in for bob"
        view = await alice.job(mine)
        assert view is not None
        assert view.status == "QUEUED", "untouched by bob"
        assert wire.unpack(view.args) == ["alice's"], "her own arguments, to her"
        assert [j.job_id for j in await alice.jobs()] == [mine]
        assert await alice.cancel([mine]) == {mine: "CANCELLED"}
    async with cluster.client() as admin:  # an admin key sees every job
        assert sorted(j.job_id for j in await admin.jobs()) == sorted([mine, theirs])


async def test_a_client_key_sees_the_workers_but_not_the_jobs_they_run(cluster: Cluster) -> None:
    cluster.use_keys()
    cluster.key("alice", "clients")
    cluster.key("bob", "clients")
    cluster.start(workers=1)
    async with client_as(cluster, "alice") as alice, client_as(cluster, "bob") as bob:
        job_id = await alice.submit("spin", [60.0])
        await until_running(alice, job_id)
        admin_view = [w for w in (await cluster_status(cluster)).workers if w.name == "w0"]
        assert [j.job_id for j in admin_view[0].jobs] == [job_id], "an admin sees it"
        for client in (alice, bob):
            workers = [w for w in (await client.status()).workers if w.name == "w0"]
            assert workers[0].running == 1
            assert workers[0].jobs == [], "which job, and whose, is not a client's to see"
        await alice.cancel([job_id])


async def cluster_status(cluster: Cluster) -> wire.StatusView:
    async with cluster.client() as admin:
        return await admin.status()
