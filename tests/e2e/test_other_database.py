"""Schedulers of different databases never share a worker's or a client's work: job ids and
fencing tokens mean something only within one database, and every database has an id
(made when it was created) that a scheduler names in its Welcome. Real processes:

- a scheduler on its own SQLite file given beside a PostgreSQL one in a worker's address
  list is passed over with one line naming both, and its jobs are not run by that worker;
- a scheduler restarted on a new database at the same address: a worker holding a job of
  the old one stops it and exits 1 (its result would land on another job with the same
  id), a client waiting for an old job is told, and the new database's job 1 runs once,
  on another worker."""

from __future__ import annotations

import asyncio
import time

import pytest

from actors.client import AsyncClient
from actors.errors import RequestLost
from tests.helpers.cluster import Cluster
from tests.helpers.ledger_tasks import read_ledger
from tests.helpers.procs import free_address
from tests.helpers.waiting import until_running, until_started

pytestmark = pytest.mark.slow

LEASE_5S = ("--lease", "5", "--lease-grace", "1")


async def until_logged(cluster: Cluster, label: str, text: str, timeout: float = 30.0) -> str:
    """Until the processes started as ``label`` wrote a line with ``text``; that line."""
    deadline = time.monotonic() + timeout
    while True:
        for line in cluster.log(label).splitlines():
            if text in line:
                return line
        assert time.monotonic() < deadline, f"{label} never logged {text!r}"
        await asyncio.sleep(0.05)


async def test_a_sqlite_scheduler_beside_a_postgresql_one_is_passed_over_naming_both(
    cluster: Cluster, postgres_dsn: str
) -> None:
    cluster.start(*LEASE_5S)  # the stray one: its own SQLite file
    async with cluster.client() as stray_client:
        stray = await stray_client.submit("record", ["stray"])
    postgres = free_address()
    leader = cluster.procs.scheduler(postgres, postgres_dsn, *LEASE_5S)
    cluster.worker("w", 2, connect=f"{postgres},{cluster.address}")
    async with AsyncClient(postgres, connect_timeout=10) as client:
        job_id = await client.submit("record", ["ours"], {"seconds": 0.2})
        assert await client.result(job_id, timeout=30) == "ours"
    leader.kill()  # the worker looks further, and finds the stray one
    leader.wait(10)
    line = await until_logged(cluster, "w", "serves another database")
    assert cluster.address in line, line
    assert postgres in line, line
    assert "postgresql://" in line, "the PostgreSQL database is named"
    async with cluster.client() as stray_client:
        view = await stray_client.job(stray)
        assert view is not None
        assert view.status == "QUEUED", "not run by the PostgreSQL scheduler's worker"
        status = await stray_client.status()
        assert status.workers == [], "the worker never joined the stray scheduler"
    assert "stray" not in {r["value"] for r in read_ledger(cluster.ledger)}


async def test_a_scheduler_restarted_on_a_new_database_is_not_given_the_old_ones_work(
    cluster: Cluster,
) -> None:
    cluster.start(*LEASE_5S)
    old = cluster.worker("old", 1)
    async with cluster.client() as client:
        job_id = await client.submit("record", ["old"], {"seconds": 30.0})
        await until_running(client, job_id)
        await until_started(cluster.ledger, job_id)
        waiting = asyncio.ensure_future(client.wait([job_id], timeout=60))
        cluster.stop_scheduler()
        cluster.db = cluster.procs.tmp / "new.db"  # an operator's mistake, or a fresh start
        cluster.start_scheduler()
        with pytest.raises(RequestLost, match="now serves another database"):
            await waiting
    line = await until_logged(cluster, "old", "from the database served before and exiting")
    assert f"job(s) {job_id} " in line, line
    assert old.wait(30) == 1, "a worker that abandoned jobs exits 1"
    async with cluster.client() as client:
        new_id = await client.submit("record", ["new"])
        assert new_id == job_id, "the new database numbers from 1 again: the same id"
        cluster.worker("fresh", 1)
        assert await client.result(new_id, timeout=30) == "new"
        view = await client.job(new_id)
        assert view is not None
        assert (view.attempts, view.token) == (1, 1)
    runs = read_ledger(cluster.ledger)
    assert [(r["value"], r["end"] is not None) for r in runs] == [("old", False), ("new", True)]
