"""``corral backup PATH`` (issue 17) while a scheduler runs and jobs are being submitted:
the copy opens, passes SQLite's integrity check and holds a consistent set of jobs (every
job acknowledged before the backup began, ids without gaps, each with a full row); it is a
database of its own to corral (a new identity) and a scheduler starts on it. An existing
file is refused, and a PostgreSQL database is pointed to pg_dump."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from actors.client import job_spec
from tests.helpers.cluster import Cluster
from tests.helpers.procs import corral
from tests.helpers.waiting import until_workers

pytestmark = pytest.mark.slow


def read(path: Path, sql: str) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


async def test_a_backup_taken_while_jobs_are_submitted_holds_a_consistent_set(
    cluster: Cluster, tmp_path: Path
) -> None:
    cluster.start(workers=1, slots=8)
    copy = tmp_path / "backup.db"
    async with cluster.client() as client:
        await until_workers(client, {"w0"})
        acknowledged: list[int] = []
        stop = asyncio.Event()

        async def submitting() -> None:
            while not stop.is_set():
                acknowledged.extend(
                    await client.submit_many([job_spec("record", [i]) for i in range(50)])
                )

        feeder = asyncio.ensure_future(submitting())
        while len(acknowledged) < 500:  # noqa: ASYNC110 (the feeder runs meanwhile)
            await asyncio.sleep(0.05)
        before = set(acknowledged)
        done = await asyncio.to_thread(corral, "backup", str(copy), "--db", str(cluster.db))
        stop.set()
        await feeder
        assert done.returncode == 0, done.stderr
        assert str(copy) in done.stdout
        assert "bytes" in done.stdout
        await client.wait(acknowledged, timeout=60)
    assert read(copy, "PRAGMA integrity_check") == [("ok",)]
    ids = [row[0] for row in read(copy, "SELECT id FROM jobs ORDER BY id")]
    assert before <= set(ids), "every job acknowledged before the backup is in it"
    assert ids == list(range(1, len(ids) + 1)), "one commit's jobs: no gaps"
    states = dict(read(copy, "SELECT status, count(*) FROM jobs GROUP BY 1"))  # type: ignore[arg-type]
    assert set(states) <= {"PENDING", "QUEUED", "RUNNING", "SUCCEEDED"}
    live = dict(read(cluster.db, "SELECT key, value FROM corral_meta"))  # type: ignore[arg-type]
    mine = dict(read(copy, "SELECT key, value FROM corral_meta"))  # type: ignore[arg-type]
    assert mine["database_id"] != live["database_id"], "a backup is a database of its own"
    # A scheduler starts on the copy, and serves what it holds.
    cluster.stop_scheduler()
    cluster.db = copy
    cluster.start_scheduler()
    async with cluster.client() as client:
        view = await client.job(ids[0])
        assert view is not None


def test_a_backup_refuses_an_existing_file_and_points_postgresql_to_pg_dump(
    tmp_path: Path,
) -> None:
    existing = tmp_path / "there.db"
    existing.write_bytes(b"keep me")
    refused = corral("backup", str(existing), "--db", str(tmp_path / "c.db"))
    assert refused.returncode == 2
    assert "exists already" in refused.stderr
    assert refused.stderr.count("\n") == 1
    assert existing.read_bytes() == b"keep me"
    pg = corral("backup", str(tmp_path / "new.db"), "--db", "postgresql://u:secret@h/corral")
    assert pg.returncode == 2
    assert "pg_dump" in pg.stderr
    assert "secret" not in pg.stderr
    assert pg.stderr.count("\n") == 1
    assert not (tmp_path / "new.db").exists()
    missing = corral("backup", str(tmp_path / "new.db"), "--db", str(tmp_path / "none.db"))
    assert missing.returncode == 1
    assert "no database" in missing.stderr
    assert not (tmp_path / "new.db").exists()
    assert not (tmp_path / "none.db").exists()
