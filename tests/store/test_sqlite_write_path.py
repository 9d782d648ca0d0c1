"""The SQLite write path's cheap shapes (issue 19): what it binds, and the partial indexes
its writes maintain. The costs themselves are measured by ``python -m bench.write_path``,
not asserted here; these tests hold the properties that make them cheap."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import msgspec

from actors.config import SchedulerConfig
from actors.lifecycle import QUEUED, RUNNING
from actors.scheduler.jobs import JobTable
from actors.scheduler.ops import Ops
from actors.scheduler.store import sqlite, sqlite_purge
from actors.scheduler.store.sqlite_binds import insert_rows, update_runs
from actors.scheduler.store.sqlite_schema import migrate
from tests.helpers import schema_v1
from transport import protocol as wire

# The only types Python's sqlite3 binds without its adapter lookup (no None either).
PLAIN = (int, float, str, bytearray)


def plain(row: tuple[Any, ...]) -> bool:
    return all(type(value) in PLAIN for value in row)


def spec(**fields: Any) -> wire.JobSpec:
    return wire.JobSpec("bench.noop", **fields)


def test_inserts_and_updates_bind_only_plain_values() -> None:
    table = JobTable(SchedulerConfig())
    ops = Ops()
    bare = table.create(spec(), ops)
    table.move(bare, QUEUED, ops)
    full = table.create(
        spec(
            idempotency_key="k",
            timeout=2.5,
            backoff=wire.Backoff(1.0, 2.0, 30.0),
            concurrency_key="c",
            max_concurrent=2,
            depends_on=[bare.id],
        ),
        ops,
        workflow_id=7,
        step="load",
        owner="me",
    )
    ops.seal()
    groups = insert_rows(ops.inserts)
    assert len(groups) == 2, "one statement per shape of absent values"
    assert all(plain(row) for rows in groups.values() for row in rows)
    later = Ops()
    table.lease(bare.id, b"peer", "w1", later)
    table.succeed(bare, msgspec.Raw(b"\x01"), later)
    table.cancel(full, later)
    runs = list(update_runs(later.updates))
    assert [len(rows) for _, rows in runs] == [1, 1, 1], "in order: lease, success, cancel"
    assert all(plain(row) for _, rows in runs for row in rows)
    assert "finished_at=NULL" in runs[0][0], "an absent value is a literal NULL"
    assert [row[-1] for _, rows in runs for row in rows] == ["QUEUED", "RUNNING", "PENDING"]


def test_the_jobs_indexes_use_no_in_lists(tmp_path: Path) -> None:
    """SQLite builds a temporary b-tree for ``status IN (a, b, c)`` each time a write
    checks a row against such an index: step 9 spells them as ORs."""
    path = tmp_path / "new.db"
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn, str(path))
    indexes = conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index'").fetchall()
    conn.close()
    assert {"jobs_live", "jobs_finished"} <= {name for name, _ in indexes}
    assert not [name for name, sql in indexes if sql and " IN " in sql.upper()]


def test_an_upgraded_database_reads_live_and_finished_jobs_through_the_new_indexes(
    tmp_path: Path,
) -> None:
    path = tmp_path / "v1.db"
    schema_v1.every_state(path)
    conn = sqlite3.connect(path, isolation_level=None)
    assert migrate(conn, str(path)) == 1
    live_sql = f"SELECT id FROM jobs WHERE {sqlite._LIVE} ORDER BY id"
    plan = " ".join(row[-1] for row in conn.execute(f"EXPLAIN QUERY PLAN {live_sql}"))
    assert "USING INDEX jobs_live" in plan
    every = dict(conn.execute("SELECT id, status FROM jobs").fetchall())
    live = sorted(i for i, s in every.items() if s in ("PENDING", "QUEUED", RUNNING))
    assert [i for (i,) in conn.execute(live_sql)] == live
    candidates = conn.execute(
        f"EXPLAIN QUERY PLAN {sqlite_purge._CANDIDATES}", ("SUCCEEDED", 1e12, 10)
    ).fetchall()
    assert "USING INDEX jobs_finished" in candidates[0][-1]
    indexed = conn.execute(
        f"SELECT id FROM jobs INDEXED BY jobs_finished WHERE {sqlite_purge.TERMINAL} "
        "AND status = 'SUCCEEDED'"
    ).fetchall()
    assert [i for (i,) in indexed] == [i for i, s in every.items() if s == "SUCCEEDED"]
    chart = conn.execute(f"EXPLAIN QUERY PLAN {sqlite.ENDED_BY_MINUTE}", (0.0,)).fetchall()
    assert "USING COVERING INDEX jobs_finished" in chart[0][-1], "the dashboard's chart"
    conn.close()
