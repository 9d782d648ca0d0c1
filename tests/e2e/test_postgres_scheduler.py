"""The contract on PostgreSQL, on real processes: ``corral scheduler --db postgresql://...``
with real workers over a real server (tests/helpers/postgres.py). Jobs succeed; a killed
worker's job is reclaimed under a new token and a paused one's late result refused; a
scheduler SIGKILLed twice mid-run loses and doubles nothing; idempotency keys, workflows,
retries and dead letters hold across it; a database it cannot use ends it with one line.
(Several schedulers on one database: test_standby_schedulers.py.)"""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter

import pytest

from actors.client import AsyncClient, job_spec
from tests.e2e.test_startup import Run, assert_one_line_failure, start_line
from tests.helpers import postgres
from tests.helpers.cluster import Cluster
from tests.helpers.ledger_tasks import completed, read_ledger
from tests.helpers.procs import Procs, free_address
from tests.helpers.waiting import until_started
from transport import protocol as wire

pytestmark = pytest.mark.slow


@pytest.fixture
def cluster(cluster: Cluster, postgres_dsn: str) -> Cluster:
    """The e2e cluster, its scheduler on a new PostgreSQL database instead of a file."""
    cluster.db = postgres_dsn  # type: ignore[assignment]
    return cluster


async def until_refused(client: AsyncClient, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while (await client.status()).counters.get("refused_results", 0) < 1:
        assert time.monotonic() < deadline, "the late result was never refused"
        await asyncio.sleep(0.05)


async def test_jobs_run_to_succeeded_and_the_start_line_names_the_database_without_password(
    cluster: Cluster, postgres_dsn: str
) -> None:
    run = Run(cluster.procs, "scheduler", "--bind", cluster.address, "--db", postgres_dsn)
    line = start_line(run)
    cluster.worker("w0", 4)
    cluster.worker("w1", 4)
    async with cluster.client() as client:
        ids = await client.submit_many([job_spec("record", [i]) for i in range(300)])
        outcomes = await client.wait(ids, timeout=60)
    assert [wire.unpack(outcomes[i].result) for i in ids] == list(range(300))
    assert Counter(r["job"] for r in completed(cluster.ledger)) == Counter(ids)
    assert postgres.PASSWORD not in line + run.stdout + run.stderr
    assert "postgresql://corral:***@127.0.0.1:" in line, line
    assert "new database" in line, line


async def test_a_sigkilled_workers_job_is_reclaimed_and_runs_again_under_a_new_token(
    cluster: Cluster,
) -> None:
    cluster.start()
    doomed = cluster.worker("doomed", 1)
    async with cluster.client() as client:
        job_id = await client.submit("bait", [30.0, 0.1], max_retries=2)  # long under token 1
        await until_started(cluster.ledger, job_id)
        doomed.send_signal(signal.SIGKILL)
        cluster.worker("rescuer", 1)
        assert await client.result(job_id, timeout=30) == 2
        view = await client.job(job_id)
    assert view is not None
    assert (view.status, view.token, view.worker) == ("SUCCEEDED", 2, "rescuer")
    runs = read_ledger(cluster.ledger)
    assert [(r["worker"], r["token"]) for r in runs] == [("doomed", 1), ("rescuer", 2)]


async def test_a_paused_workers_late_result_is_refused_and_the_new_holders_committed(
    cluster: Cluster,
) -> None:
    cluster.start()
    zombie = cluster.worker("zombie", 1)
    async with cluster.client() as client:
        job_id = await client.submit("bait", [30.0, 0.1], max_retries=5)
        await until_started(cluster.ledger, job_id)
        zombie.send_signal(signal.SIGSTOP)
        cluster.worker("rescuer", 1)
        outcome = (await client.wait([job_id], timeout=30))[job_id]
        zombie.send_signal(signal.SIGCONT)
        await until_refused(client)
        view = await client.job(job_id)
    assert (outcome.status, wire.unpack(outcome.result)) == ("SUCCEEDED", 2)
    assert view is not None
    assert (view.status, view.token, view.worker) == ("SUCCEEDED", 2, "rescuer")


async def test_a_scheduler_sigkilled_twice_mid_run_completes_every_acknowledged_job_once(
    cluster: Cluster,
) -> None:
    cluster.start(workers=3, slots=4)
    async with cluster.client() as client:
        ids = await client.submit_many([job_spec("token", [0.002]) for _ in range(2000)])
        for fraction in (0.25, 0.6):
            while (await client.status()).jobs.get("SUCCEEDED", 0) < fraction * len(ids):  # noqa: ASYNC110
                await asyncio.sleep(0.02)  # polling the scheduler is the point here
            cluster.restart_scheduler()
        outcomes = await client.wait(ids, timeout=120)
        views = {v.job_id: v for v in await client.jobs("SUCCEEDED", limit=5000)}
    assert {o.status for o in outcomes.values()} == {"SUCCEEDED"}
    assert set(views) == set(ids)
    last_token: dict[int, int] = {}
    for run in read_ledger(cluster.ledger):
        last_token[run["job"]] = max(last_token.get(run["job"], 0), run["token"])
    for job_id in ids:
        # One committed result per job, and it is the one from the job's last lease.
        assert wire.unpack(outcomes[job_id].result) == views[job_id].token == last_token[job_id]
    reruns = sum(n - 1 for n in Counter(r["job"] for r in completed(cluster.ledger)).values())
    assert reruns <= 2 * 12, "only jobs in flight at a kill may run again"


async def test_idempotent_submissions_and_a_workflow_hold_across_a_restart(
    cluster: Cluster,
) -> None:
    cluster.start()
    async with cluster.client() as client:
        first = await asyncio.gather(
            *(client.submit("record", [i], idempotency_key="invoice-7") for i in range(20))
        )
        spec = (job_spec("step", [0.0]), [])
        flow_id, steps = await client.submit_workflow(
            {"a": spec, "b": (spec[0], ["a"]), "c": (spec[0], ["a"]), "d": (spec[0], ["b", "c"])},
            name="diamond",
            idempotency_key="flow-7",
        )
    assert len(set(first)) == 1
    cluster.restart_scheduler()  # before any worker ran anything
    cluster.worker("w", 2)
    async with cluster.client() as client:
        assert await client.submit("record", [0], idempotency_key="invoice-7") == first[0]
        again, _ = await client.submit_workflow(
            {"a": spec}, name="diamond", idempotency_key="flow-7"
        )
        result = await client.result(steps["d"], timeout=30)
        await client.wait([first[0]], timeout=30)
        view = await client.workflow(flow_id)
        status = await client.status()
    assert again == flow_id
    assert sorted(result["parents"]) == ["b", "c"]
    assert view is not None
    assert [s.status for s in view.steps] == ["SUCCEEDED"] * 4
    assert sum(status.jobs.values()) == 5, "one keyed job and four steps, each made once"
    by_step = {r["step"]: r for r in read_ledger(cluster.ledger) if r.get("step")}
    assert by_step["a"]["end"] < min(by_step["b"]["start"], by_step["c"]["start"])
    assert max(by_step["b"]["end"], by_step["c"]["end"]) < by_step["d"]["start"]


async def test_retries_then_a_dead_letter_that_a_requeue_runs_again(cluster: Cluster) -> None:
    cluster.start()
    cluster.worker("w", 2)
    async with cluster.client() as client:
        retried = await client.submit("fail_until", [2], max_retries=3, backoff=(0.05, 1, 1))
        dead = await client.submit("fail_below_token", [3], max_retries=2, backoff=(0.05, 1, 1))
        assert await client.result(retried, timeout=30) == 3
        assert (await client.wait([dead], timeout=30))[dead].status == "FAILED"
        cluster.restart_scheduler()  # the dead letter is read back from PostgreSQL
        assert [v.job_id for v in await client.jobs("FAILED")] == [dead]
        assert (await client.requeue([dead])).job_ids == [dead]
        assert await client.result(dead, timeout=30) == 4
        view = await client.job(retried)
    assert view is not None
    assert [a.outcome for a in view.history] == ["error", "error", "succeeded"]
    assert "planned failure on attempt 1" in (view.history[0].error or "")


# ------------------------------------------------------------------ databases it cannot use


def test_a_database_it_cannot_use_ends_the_scheduler_with_one_line(
    procs: Procs, postgres_server: str, postgres_dsn: str
) -> None:
    port = postgres_server.rsplit(":", 1)[1].split("/")[0]
    closed = free_address().rsplit(":", 1)[1]  # nothing listens there
    cases = [
        (f"postgresql://corral@127.0.0.1:{closed}/x", ["127.0.0.1:" + closed, "refused"]),
        (f"postgresql://corral:not-it@127.0.0.1:{port}/postgres", ["refused user corral"]),
        (f"postgresql://nobody:not-it@127.0.0.1:{port}/postgres", ["refused user nobody"]),
        (postgres_dsn.rsplit("/", 1)[0] + "/no_such_db", ["no_such_db does not exist"]),
    ]
    for dsn, words in cases:
        run = Run(procs, "scheduler", "--bind", free_address(), "--db", dsn)
        line = assert_one_line_failure(run, *words)
        assert "not-it" not in line, "no password in the message"


def test_a_malformed_dsn_or_a_bad_leadership_setting_is_a_usage_error(
    procs: Procs, postgres_dsn: str
) -> None:
    run = Run(procs, "scheduler", "--db", "postgresql://u:secret@h:99999/db")
    assert_one_line_failure(run, "--db / CORRAL_DB", "bad port '99999'")
    assert run.proc.returncode == 2
    assert "secret" not in run.stderr
    for flags, words in (
        (("--durability", "normal"), ("--durability", "PostgreSQL")),
        (("--leader-ttl", "0.1"), ("--leader-ttl / CORRAL_LEADER_TTL", "at least 0.5 s")),
        (("--bind", "tcp://*:5555"), ("--bind / CORRAL_BIND", "--advertise")),
        (("--bind", "tcp://0.0.0.0:5555"), ("--bind / CORRAL_BIND", "--advertise")),
        (("--advertise", "tcp://*:5555"), ("--advertise / CORRAL_ADVERTISE", "wildcard")),
        (("--advertise", "localhost:5555"), ("--advertise / CORRAL_ADVERTISE", "tcp://HOST")),
    ):
        run = Run(procs, "scheduler", "--db", postgres_dsn, *flags)
        assert_one_line_failure(run, *words)
        assert run.proc.returncode == 2


async def test_a_hand_edited_status_stops_the_scheduler_with_one_line_not_a_standby_loop(
    procs: Procs, postgres_dsn: str
) -> None:
    """Every node would fail on such a row in turn: the one that meets it exits, one line,
    rather than resigning and campaigning again for ever."""
    import asyncpg

    address = free_address()
    first = Run(procs, "scheduler", "--bind", address, "--db", postgres_dsn)
    start_line(first)
    async with AsyncClient(address, connect_timeout=10) as client:
        await client.submit("record", [1])
    first.proc.terminate()
    assert first.exits() == 0, first.stderr
    conn = await asyncpg.connect(postgres_dsn)
    try:
        await conn.execute("UPDATE jobs SET status = 'DONE'")
    finally:
        await conn.close()
    run = Run(procs, "scheduler", "--bind", address, "--db", postgres_dsn)
    assert_one_line_failure(run, "could not have written", "status 'DONE'")
