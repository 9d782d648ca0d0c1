"""A rate limit declared on ``@task`` (issue 17), on real processes: the workers that run
the task tell the scheduler, which holds every job of it to the rate, from the very first
(jobs queued before any worker joined do not start in a burst), keeps the limit in its
database, shows it as the task's own, and lets an admin's ``corral limit set`` win over it
for good. The scheduler's record of each attempt's start (its token's time) is checked
against the limit's bound exactly; the ledger (start lines the handler writes) says every
execution ran under a lease the scheduler granted, no sooner than it granted it."""

from __future__ import annotations

import signal

import pytest

from actors.client import job_spec
from bench.timing import recorded_starts, worst_window
from tests.helpers.cluster import Cluster
from tests.helpers.ledger_tasks import read_ledger
from tests.helpers.metered_tasks import BURST, PER_S
from tests.helpers.procs import corral
from tests.helpers.waiting import until_workers

pytestmark = pytest.mark.slow

METERED = "tests.helpers.metered_tasks"


async def test_a_tasks_own_rate_limit_holds_from_its_first_job_and_an_admins_wins(
    cluster: Cluster,
) -> None:
    cluster.start()
    jobs = 2 * PER_S + BURST  # the burst, then two seconds' worth
    async with cluster.client() as client:
        ids = await client.submit_many([job_spec("metered", [i]) for i in range(jobs)])
        # Queued before any worker: the first hello must bring the limit ahead of the
        # slots it offers, or 64 slots would start all of them at once.
        cluster.worker("w0", 32, tasks=METERED)
        cluster.worker("w1", 32, tasks=METERED)
        outcomes = await client.wait(ids, timeout=60)
        assert {o.status for o in outcomes.values()} == {"SUCCEEDED"}
        granted = await recorded_starts(client, ids)
        (limit,) = await client.limits()
        assert (limit.name, limit.count, limit.period, limit.burst, limit.declared) == (
            "metered",
            PER_S,
            1.0,
            BURST,
            True,
        )
    # GCRA: BURST at once, then one every 1/PER_S s; unlimited, all 45 would start within
    # a fraction of a second. Checked on the starts the scheduler recorded, when each took
    # its token (a retry takes another), on the bucket's own clock. (The workers' start
    # lines cannot say it exactly: a loaded machine delays some deliveries by more than
    # 1/PER_S and they bunch, 32 in one second once.)
    assert len(granted) >= jobs
    starts = [at for at in granted.values() if at is not None]
    assert len(starts) == len(granted)
    excess, first, last = worst_window(starts, PER_S, 1.0, BURST)
    assert excess <= 0, f"{excess} over burst + rate * T in {last - first:.3f} s"
    ran = {(r["job"], r["token"]): r["start"] for r in read_ledger(cluster.ledger)}
    assert {job_id for job_id, _ in ran} == set(ids)
    assert ran.keys() <= granted.keys(), "every execution under a lease the scheduler granted"
    for lease, start in ran.items():
        assert start >= granted[lease], f"job {lease[0]} ran before its start was granted"
    listed = corral("limit", "list", "--connect", cluster.address)
    assert "(declared by the task)" in listed.stdout, listed.stdout

    # An admin's limit of the same name wins, and a worker saying hello again with the
    # task's own does not change it back; a restart keeps both the limit and who set it.
    shown = corral("limit", "set", "metered", "1000/s", "--connect", cluster.address)
    assert shown.returncode == 0, shown.stderr
    cluster.workers["w0"].kill()
    cluster.workers["w0"].wait()
    cluster.restart_scheduler(signal.SIGKILL)
    cluster.worker("w0", 32, tasks=METERED)
    async with cluster.client() as client:
        await until_workers(client, {"w0", "w1"})
        # A job of the task runs only after the hellos' declarations reached the scheduler
        # (the strategy tells it before any pick they gate).
        more = await client.submit_many([job_spec("metered", [i]) for i in range(10)])
        await client.wait(more, timeout=30)
        assert [(x.name, x.count, x.declared) for x in await client.limits()] == [
            ("metered", 1000, False)
        ]
    listed = corral("limit", "list", "--connect", cluster.address)
    assert "declared" not in listed.stdout, listed.stdout
