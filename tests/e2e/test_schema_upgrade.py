"""A database from the release before numbered migrations (schema 1), with a job in every
state, under the real new scheduler and a real worker: it is upgraded at start-up and says
so, every job is still there, and the live ones run (the queued, the retrying, the orphaned
running one once its lease is reclaimed, the dependent one after its parent, a requeued dead
letter with the descendant it doomed). A database newer than the code is refused untouched."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from actors.scheduler.store.sqlite_schema import SCHEMA_VERSION
from tests.helpers import schema_v1 as v1
from tests.helpers.cluster import Cluster
from tests.helpers.ledger_tasks import completed, read_ledger
from tests.helpers.procs import FAST_TIMINGS, ROOT, Procs, free_address

pytestmark = pytest.mark.slow

LIVE = [v1.EXTRACT_ID, v1.LOAD_ID, v1.RETRYING_ID, v1.RUNNING_ID]


def scheduler_log(procs: Procs) -> str:
    return "\n".join(p.read_text(errors="replace") for p in procs.logs.glob("scheduler-*.log"))


async def until_logged(procs: Procs, *texts: str, timeout: float = 20.0) -> None:
    """Wait until the scheduler's output (stdout and stderr) holds every one of ``texts``."""
    deadline = time.monotonic() + timeout
    while not all(text in (log := scheduler_log(procs)) for text in texts):
        assert time.monotonic() < deadline, f"not logged: {texts}\n{log}"
        await asyncio.sleep(0.02)


async def test_a_schema_1_database_is_upgraded_and_every_live_job_runs(
    cluster: Cluster, procs: Procs
) -> None:
    db = cluster.db
    v1.every_state(db, task="record")
    cluster.start("--log-level", "INFO")
    scheduler = cluster.scheduler
    async with cluster.client() as client:
        # No worker yet: what start-up recovered, before anything can run.
        before = {job_id: await client.job(job_id) for job_id in v1.STATES}
        await until_logged(
            procs,
            f"upgraded database {db} from schema 1 to {SCHEMA_VERSION}",
            "recovered 4 live job(s) (2 pending, 1 queued, 1 running)",
        )
        for job_id, state in v1.STATES.items():
            view = before[job_id]
            assert view is not None, job_id
            # A backoff may end, and the orphan's lease be reclaimed, while we look.
            allowed = {state} | ({"QUEUED"} if job_id in (v1.RETRYING_ID, v1.RUNNING_ID) else set())
            assert view.status in allowed, (job_id, view.status)

        cluster.worker("w1", 4)
        outcomes = await client.wait(LIVE, timeout=60)
        assert {job_id: o.status for job_id, o in outcomes.items()} == dict.fromkeys(
            LIVE, "SUCCEEDED"
        )
        for job_id, value in (
            (v1.EXTRACT_ID, "extract"),
            (v1.LOAD_ID, "load"),
            (v1.RETRYING_ID, "retried"),
            (v1.RUNNING_ID, "was running"),
        ):
            assert await client.result(job_id, timeout=5) == value

        # The dead letter is requeued; the descendant it doomed comes back with it.
        reply = await client.requeue(all_failed=True)
        assert (reply.job_ids, reply.skipped) == ([v1.FAILED_ID], []), reply
        again = await client.wait([v1.FAILED_ID, v1.DOOMED_ID], timeout=60)
        assert {o.status for o in again.values()} == {"SUCCEEDED"}, again

        views = {job_id: await client.job(job_id) for job_id in v1.STATES}
        workflow = await client.workflow(v1.WORKFLOW_ID)

    extract, load = views[v1.EXTRACT_ID], views[v1.LOAD_ID]
    assert extract is not None
    assert load is not None
    assert extract.finished_at is not None
    assert load.started_at is not None
    assert load.started_at >= extract.finished_at, "the child ran after its parent"
    running = views[v1.RUNNING_ID]
    assert running is not None
    assert running.token == 2, "reclaimed, then leased under a new token"
    retried = views[v1.RETRYING_ID]
    assert retried is not None
    assert (retried.attempts, retried.token) == (2, 2)
    assert [(a.token, a.outcome) for a in retried.history] == [(1, "error"), (2, "succeeded")]
    done, cancelled = views[v1.SUCCEEDED_ID], views[v1.CANCELLED_ID]
    assert done is not None
    assert (done.status, done.token, bytes(done.result)) == ("SUCCEEDED", 1, v1.pack("done"))
    assert cancelled is not None
    assert cancelled.status == "CANCELLED"
    assert workflow is not None
    assert workflow.name == "etl"
    assert [(s.name, s.status, s.after) for s in workflow.steps] == [
        ("extract", "SUCCEEDED", []),
        ("load", "SUCCEEDED", ["extract"]),
    ]
    ran = sorted(r["job"] for r in completed(str(procs.ledger)))
    assert ran == sorted([*LIVE, v1.FAILED_ID, v1.DOOMED_ID]), "each live job once, no other"
    assert {r["token"] for r in read_ledger(str(procs.ledger)) if r["job"] == v1.RUNNING_ID} == {2}

    scheduler.send_signal(signal.SIGTERM)
    assert scheduler.wait(timeout=20) == 0, scheduler_log(procs)
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 10
        indexes = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    conn.close()
    assert "jobs_failed" not in indexes, "made by step 2, dropped by step 10"
    assert "jobs_finished" in indexes


def test_a_database_newer_than_the_code_is_refused_with_one_line(
    procs: Procs, tmp_path: Path
) -> None:
    db = tmp_path / "future.db"
    v1.every_state(db)
    with sqlite3.connect(db) as conn:  # as a later corral would leave it
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    conn.close()
    before = db.read_bytes(), os.stat(db).st_mtime_ns
    command = ["scheduler", "--bind", free_address(), "--db", str(db), *FAST_TIMINGS]
    run = subprocess.run(
        [sys.executable, "-m", "actors.cli", *command],
        env=procs.env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert run.returncode != 0, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert "Traceback" not in run.stderr, run.stderr
    for words in (str(db), f"schema {SCHEMA_VERSION + 1}", f"knows up to {SCHEMA_VERSION}"):
        assert words in lines[0], run.stderr
    assert (db.read_bytes(), os.stat(db).st_mtime_ns) == before, "the file is untouched"
