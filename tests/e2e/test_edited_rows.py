"""A database edited by hand, on a real scheduler process and a real SQLite file: a live
row corral could not have written stops the start with one line naming the job and the
column, exits non-zero (never hangs) and leaves the file as it was; put right, the same
file starts and recovers every job. A finished row like it fails only the requests that
read it: the scheduler keeps serving."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import pytest

from actors.client import AsyncClient, job_spec
from actors.errors import CorralError
from tests.e2e.test_startup import assert_one_line_failure, port_is_free, port_of, scheduler
from tests.helpers.procs import Procs, corral, free_address, wait_for_port

pytestmark = pytest.mark.slow


async def three_jobs(procs: Procs, db: Path) -> None:
    """``db`` holding jobs 1 to 3, QUEUED, written by a real scheduler stopped cleanly."""
    address = free_address()
    first = scheduler(procs, address, db)
    wait_for_port(address, first.proc)
    async with AsyncClient(address, connect_timeout=10) as client:
        for i in range(3):
            await client.submit("record", [i])
    first.proc.terminate()
    assert first.exits() == 0, first.stderr


def edit(db: Path, sql: str) -> str:
    """Run ``sql`` on ``db`` as another program would; the file's digest afterwards."""
    with sqlite3.connect(db) as conn:
        conn.execute(sql)
    conn.close()
    return hashlib.sha256(db.read_bytes()).hexdigest()


@pytest.mark.parametrize(
    ("sql", "words"),
    [
        ("UPDATE jobs SET priority = 'high' WHERE id = 2", ("job 2", "priority", "'high'")),
        ("UPDATE jobs SET created_at = 'yesterday' WHERE id = 1", ("job 1", "created_at")),
        ("UPDATE jobs SET depends_on = x'c1' WHERE id = 3", ("job 3", "depends_on")),
        ("UPDATE jobs SET status = 'DONE' WHERE id = 2", ("status 'DONE'",)),
        ("UPDATE jobs SET created_at = 1e400 WHERE id = 1", ("inf", "not a time")),
    ],
)
async def test_a_hand_edited_row_stops_the_start_with_one_line_and_changes_nothing(
    procs: Procs, tmp_path: Path, sql: str, words: tuple[str, ...]
) -> None:
    db = tmp_path / "c.db"
    await three_jobs(procs, db)
    digest = edit(db, sql)
    address = free_address()
    run = scheduler(procs, address, db)
    line = assert_one_line_failure(run, str(db), "could not have written", *words)
    assert "restore a backup" in line, line
    assert port_is_free(port_of(address))
    assert hashlib.sha256(db.read_bytes()).hexdigest() == digest, "the file is left as it was"


async def test_put_right_the_same_file_starts_and_recovers_every_job(
    procs: Procs, tmp_path: Path
) -> None:
    db = tmp_path / "c.db"
    await three_jobs(procs, db)
    edit(db, "UPDATE jobs SET priority = 'high' WHERE id = 2")
    address = free_address()
    assert_one_line_failure(scheduler(procs, address, db), "job 2")
    edit(db, "UPDATE jobs SET priority = 0 WHERE id = 2")
    again = scheduler(procs, address, db)
    wait_for_port(address, again.proc)
    async with AsyncClient(address, connect_timeout=10) as client:
        views = [await client.job(job_id) for job_id in (1, 2, 3)]
    assert [v.status if v else None for v in views] == ["QUEUED"] * 3


async def test_a_hand_edited_finished_row_fails_only_the_requests_that_read_it(
    procs: Procs, tmp_path: Path
) -> None:
    db = tmp_path / "c.db"
    await three_jobs(procs, db)
    # finished when created: recent, so retention keeps it (a 1970 time would be purged)
    failed = "status = 'FAILED', result = 'oops', finished_at = created_at"
    edit(db, f"UPDATE jobs SET {failed} WHERE id = 2")
    address = free_address()
    run = scheduler(procs, address, db)
    wait_for_port(address, run.proc)
    shown = corral("job", "2", "--connect", address, env=procs.env)
    assert shown.returncode != 0, shown.stdout
    assert "Traceback" not in shown.stderr, shown.stderr
    assert shown.stderr.strip().count("\n") == 0, shown.stderr
    assert "job 2: result is 'oops'" in shown.stderr, shown.stderr
    listed = corral("jobs", "--connect", address, env=procs.env)
    assert listed.returncode != 0, listed.stdout
    assert "job 2: result" in listed.stderr, listed.stderr
    # The scheduler still serves everything else, and takes new jobs.
    other = corral("job", "1", "--json", "--connect", address, env=procs.env)
    assert other.returncode == 0, other.stderr
    assert json.loads(other.stdout)["status"] == "QUEUED"
    async with AsyncClient(address, connect_timeout=10) as client:
        new_id = await client.submit("record", [9])
        assert new_id == 4
    assert run.proc.poll() is None, run.stderr
    assert "job 2: result is 'oops'" in run.stderr, "the scheduler's log names the row"


async def test_a_change_that_reads_an_unreadable_row_stops_the_scheduler_acknowledging_nothing(
    procs: Procs, tmp_path: Path
) -> None:
    """A submission whose idempotency key names a finished job with a hand-edited row: its
    handler may have changed memory before the read failed, so nothing of it may be
    acknowledged. The scheduler stops with one line; the file keeps only what it had."""
    db = tmp_path / "c.db"
    address = free_address()
    first = scheduler(procs, address, db)
    wait_for_port(address, first.proc)
    async with AsyncClient(address, connect_timeout=10) as client:
        done = await client.submit("record", [1], idempotency_key="k")
        await client.cancel([done])
    first.proc.terminate()
    assert first.exits() == 0, first.stderr
    edit(db, "UPDATE jobs SET result = 'oops', finished_at = created_at WHERE id = 1")
    run = scheduler(procs, address, db)
    wait_for_port(address, run.proc)
    async with AsyncClient(address, connect_timeout=10, request_timeout=20) as client:
        specs = [job_spec("record", idempotency_key=key) for key in ("k", "new")]
        with pytest.raises(CorralError):  # the scheduler stopped: no answer
            await client.submit_and_wait(specs, timeout=20)
    line = assert_one_line_failure(run, "could not have written", "job 1: result is 'oops'")
    assert "stopping" in line, line
    with sqlite3.connect(db) as conn:
        keys = [key for (key,) in conn.execute("SELECT idempotency_key FROM jobs")]
    conn.close()
    assert keys == ["k"], "nothing of the refused submission was written"
