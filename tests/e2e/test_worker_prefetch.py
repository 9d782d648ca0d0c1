"""Prefetch (``corral worker --prefetch N``) on real processes, counted by the ledger the
tasks write outside corral: a paused prefetching worker never runs the jobs it held
waiting once they were reclaimed, and a killed one loses none and runs none twice. Fast
test timings (heartbeat 0.2 s, lease 1.0 s, grace 0.4 s)."""

from __future__ import annotations

import itertools
import signal
import time
from collections import Counter
from typing import Any

import pytest

from actors import job_spec
from tests.helpers.cluster import Cluster
from tests.helpers.ledger_tasks import read_ledger
from tests.helpers.waiting import until, until_running, until_started
from transport import protocol as wire

pytestmark = pytest.mark.slow


async def test_a_paused_prefetching_worker_never_runs_the_jobs_it_held_waiting(
    cluster: Cluster,
) -> None:
    cluster.start()
    zombie = cluster.worker("zombie", 1, "--prefetch", "2")
    async with cluster.client() as client:
        first = await client.submit("bait", [30.0, 0.1], max_retries=5)
        await until_started(cluster.ledger, first)
        waiting = [await client.submit("record", [i, 0.0], max_retries=5) for i in (1, 2)]
        for job_id in waiting:
            await until_running(client, job_id, "zombie")  # leased to it, held unstarted
        zombie.send_signal(signal.SIGSTOP)
        cluster.worker("rescuer", 1)
        outcomes = await client.wait([first, *waiting], timeout=30)
        assert {o.status for o in outcomes.values()} == {"SUCCEEDED"}
        zombie.send_signal(signal.SIGCONT)

        async def fenced() -> bool:  # the zombie's own job: stopped, its result refused
            return (await client.status()).counters.get("refused_results", 0) >= 1

        await until(fenced, timeout=15)  # its fence dropped the waiting ones before this
        views = {j: await client.job(j) for j in waiting}
    runs = read_ledger(cluster.ledger)
    zombie_runs = [r for r in runs if r["worker"] == "zombie"]
    assert [(r["job"], r["token"]) for r in zombie_runs] == [(first, 1)], (
        "the zombie ran only the job it had started; the two it held waiting never"
    )
    for job_id in waiting:
        [run] = [r for r in runs if r["job"] == job_id]
        view = views[job_id]
        assert view is not None
        assert (run["worker"], view.worker, view.token) == ("rescuer", "rescuer", run["token"])


async def test_a_killed_prefetching_worker_loses_no_job_and_runs_none_twice(
    cluster: Cluster,
) -> None:
    cluster.start()
    doomed = cluster.worker("doomed", 2, "--prefetch", "6")
    cluster.worker("steady", 2, "--prefetch", "6")
    async with cluster.client() as client:
        specs = [job_spec("record", [i, 0.05], max_retries=5) for i in range(120)]
        ids = await client.submit_many(specs)

        async def doomed_busy() -> bool:
            done = [r for r in read_ledger(cluster.ledger) if r["worker"] == "doomed"]
            return len(done) >= 10

        await until(doomed_busy)
        killed_at = time.time()
        doomed.send_signal(signal.SIGKILL)
        outcomes = await client.wait(ids, timeout=60)
    assert Counter(o.status for o in outcomes.values()) == Counter({"SUCCEEDED": 120})
    runs = read_ledger(cluster.ledger)
    assert {r["job"] for r in runs if r["end"] is not None} == set(ids), "every job ran"
    by_job: dict[int, list[dict[str, Any]]] = {}
    for r in runs:  # sorted by start
        by_job.setdefault(r["job"], []).append(r)
    for job_id, job_runs in by_job.items():
        # A job runs again only when the worker that had it was killed (its handler cut,
        # or its result not yet committed), never while another run of it goes on.
        assert all(r["worker"] == "doomed" for r in job_runs[:-1]), (job_id, job_runs)
        assert job_runs[-1]["end"] is not None, (job_id, job_runs)
        for before, after in itertools.pairwise(job_runs):
            ended = killed_at if before["end"] is None else before["end"]
            assert ended <= after["start"], (job_id, job_runs)
    cut = [r for r in runs if r["end"] is None]
    assert {r["worker"] for r in cut} <= {"doomed"}, "only the killed worker's runs were cut"
    assert len(cut) <= 2, "at most its 2 running jobs were cut; the 6 waiting never started"
    unpacked = {j: wire.unpack(o.result) for j, o in outcomes.items()}
    assert sorted(unpacked.values()) == list(range(120))


async def test_a_prefetched_job_s_timeout_backstop_waits_for_its_start(cluster: Cluster) -> None:
    """Job 2 (timeout 0.5 s) waits 3 s for the one slot: past its timeout + lease + grace
    (1.9 s) counted from its assignment. The worker's heartbeats name it as waiting, so the
    scheduler does not take it for lost: it runs once, after job 1, in its first attempt."""
    cluster.start()
    cluster.worker("w", 1, "--prefetch", "1")
    async with cluster.client() as client:
        first = await client.submit("record", [1, 3.0])
        await until_started(cluster.ledger, first)
        second = await client.submit("record", [2, 0.0], timeout=0.5, max_retries=3)
        await until_running(client, second, "w")  # leased, waiting for the slot
        outcomes = await client.wait([first, second], timeout=30)
        view = await client.job(second)
    assert {o.status for o in outcomes.values()} == {"SUCCEEDED"}
    assert view is not None
    assert (view.attempts, view.token) == (1, 1), "never declared lost, never re-queued"
    runs = [r for r in read_ledger(cluster.ledger) if r["job"] == second]
    assert [(r["token"], r["end"] is not None) for r in runs] == [(1, True)]
