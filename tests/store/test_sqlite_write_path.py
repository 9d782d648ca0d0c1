"""The SQLite write path's cheap shapes (issue 19): what it binds, and the partial indexes
its writes maintain. The costs themselves are measured by ``python -m bench.write_path``,
not asserted here; these tests hold the properties that make them cheap."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors.config import SchedulerConfig
from actors.errors import StoreInconsistent
from actors.lifecycle import QUEUED, RUNNING
from actors.scheduler.jobs import JobTable
from actors.scheduler.ops import Ops
from actors.scheduler.store import sqlite, sqlite_purge, sqlite_rows
from actors.scheduler.store.sqlite_binds import (
    _shape_runs,
    _shaped,
    insert_rows,
    insert_statements,
    update_runs,
    update_statements,
)
from actors.scheduler.store.sqlite_rows import write_batch
from actors.scheduler.store.sqlite_schema import JOB_COLUMNS, migrate
from tests.helpers import schema_v1
from tests.helpers.job_rows import stored_job
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


# ------------------------------------------------------- many rows per statement


def _file(tmp_path: Path, name: str = "c.db") -> sqlite3.Connection:
    path = tmp_path / name
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn, str(path))
    return conn


def _queued(table: JobTable, count: int) -> tuple[list[Any], Ops]:
    ops = Ops()
    jobs = [table.create(spec(), ops) for _ in range(count)]
    table.move_all(jobs, QUEUED, ops)
    return jobs, ops.seal()


def _rows(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
    return conn.execute(f"SELECT {JOB_COLUMNS} FROM jobs ORDER BY id").fetchall()


def test_the_hot_update_rows_are_the_rows_any_update_gets() -> None:
    """A lease's and a success's rows are built in one step, apart from the general
    builder (``_shaped``) every other update goes through: they must come out the same."""
    table = JobTable(SchedulerConfig())
    jobs, _ = _queued(table, 2)
    later = Ops()
    table.lease_all([(job.id, b"peer") for job in jobs], {b"peer": "w1"}, later)
    table.succeed(jobs[0], msgspec.Raw(b"\x01"), later)
    table.fail_attempt(jobs[1], "boom", "failed", later, retry=False)  # an error: general
    runs = list(_shape_runs(later.updates))
    general = [_shaped(update) for update in later.updates]
    assert [(shape, row) for shape, rows in runs for row in rows] == general
    assert len(runs) == 3, "the leases, the success, the failure"


def test_a_batch_is_written_in_few_statements_of_many_rows(tmp_path: Path) -> None:
    conn = _file(tmp_path)
    table = JobTable(SchedulerConfig())
    jobs, created = _queued(table, 100)
    inserts = list(insert_statements(created.inserts))
    assert [sql.count("(?") for sql, _ in inserts] == [64, 32, 4]
    leased = Ops()
    table.lease_all([(job.id, b"peer") for job in jobs], {b"peer": "w1"}, leased)
    updates = list(update_statements(leased.updates))
    assert [sql.count("(?") for sql, _ in updates] == [64, 32, 4]
    write_batch(conn, created)
    write_batch(conn, leased)
    statuses = conn.execute("SELECT status, count(*) FROM jobs GROUP BY status").fetchall()
    assert statuses == [("RUNNING", 100)]
    plan = " ".join(
        r[-1] for r in conn.execute(f"EXPLAIN QUERY PLAN {updates[0][0]}", updates[0][1])
    )
    assert "SEARCH jobs USING INTEGER PRIMARY KEY" in plan, "each row finds its job by id"
    assert "SCAN jobs" not in plan


def test_one_job_changed_twice_in_a_batch_changes_in_order(tmp_path: Path) -> None:
    """A lease, its reclaim and a second lease have one shape: each goes in its own
    statement (one statement would apply only one of them, and miss the count)."""
    conn = _file(tmp_path)
    table = JobTable(SchedulerConfig())
    jobs, created = _queued(table, 9)
    write_batch(conn, created)
    later = Ops()
    first = jobs[0]
    table.lease_all([(job.id, b"peer") for job in jobs[:4]], {b"peer": "w1"}, later)
    table.requeue_reclaimed(first, later)
    table.lease(first.id, b"other", "w2", later)
    table.lease_all([(job.id, b"peer") for job in jobs[4:8]], {b"peer": "w1"}, later)
    assert len({len(row) for row in later.updates}) == 1, "one shape throughout"
    statements = [sql for sql, _ in update_statements(later.updates)]
    # [4 leases] joined, the reclaim alone, then [the second lease, 3 more] joined and the
    # last lease alone: one job's rows never share a statement.
    assert [sql.count("(?") for sql in statements] == [4, 0, 4, 0]
    write_batch(conn, later)
    row = conn.execute("SELECT status, token, worker FROM jobs WHERE id = ?", (first.id,))
    assert row.fetchone() == ("RUNNING", 2, "w2")


def test_a_missed_compare_and_swap_in_a_many_row_statement_writes_nothing(
    tmp_path: Path,
) -> None:
    conn = _file(tmp_path)
    table = JobTable(SchedulerConfig())
    jobs, created = _queued(table, 40)
    write_batch(conn, created)
    before = _rows(conn)
    later = Ops()
    table.lease_all([(job.id, b"peer") for job in jobs], {b"peer": "w1"}, later)
    stale = list(later.updates[7])
    stale[-1] = "PENDING"  # the scheduler believes job 8 PENDING: the file says QUEUED
    later.updates[7] = tuple(stale)
    with pytest.raises(StoreInconsistent, match="matched 39 of 40"):
        write_batch(conn, later)
    assert _rows(conn) == before, "the whole batch rolled back"


# A random batch of changes to a few jobs (each a lease, a reclaim, a success or a failure
# back to QUEUED), as one-row statements would apply them in order.
@st.composite
def batches(draw: st.DrawFn) -> list[tuple[int, str]]:
    return draw(
        st.lists(
            st.tuples(st.integers(1, 6), st.sampled_from(["lease", "reclaim", "succeed", "retry"])),
            max_size=80,
        )
    )


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(batches())
def test_many_row_statements_write_what_one_row_statements_write(
    tmp_path_factory: pytest.TempPathFactory, steps: list[tuple[int, str]]
) -> None:
    directory = tmp_path_factory.mktemp("batch")
    table = JobTable(SchedulerConfig())
    jobs, created = _queued(table, 6)
    later = Ops()
    for job_id, step in steps:
        job = jobs[job_id - 1]
        if step == "lease" and job.status is QUEUED:
            table.lease(job.id, b"peer", "w1", later)
        elif step == "reclaim" and job.status is RUNNING:
            table.requeue_reclaimed(job, later)
        elif step == "succeed" and job.status is RUNNING:
            table.succeed(job, msgspec.Raw(b"\x01"), later)
        elif step == "retry" and job.status is RUNNING:
            table.unlease(job, later)
    many, one = _file(directory, "many.db"), _file(directory, "one.db")
    for conn in (many, one):
        write_batch(conn, created)
    write_batch(many, later)
    one.execute("BEGIN")
    for sql, rows in update_runs(later.updates):
        assert one.executemany(sql, rows).rowcount == len(rows)
    one.execute("COMMIT")
    assert _rows(many) == _rows(one)


def test_attempts_edges_and_workflows_are_written_many_rows_per_statement(tmp_path: Path) -> None:
    conn = _file(tmp_path)
    ops = Ops(
        workflows=[(i, f"flow{i}", None, 1.0) for i in range(1, 71)],
        edges=[(i, i + 1) for i in range(1, 71)] + [(1, 2)],  # a repeated edge is ignored
        attempts=[(i, 1, "w", 1.0, 2.0, "failed", "boom") for i in range(1, 101)]
        + [(5, 1, "w", 1.0, 3.0, "timed_out", "late")],  # the same attempt again: replaced
    )
    write_batch(conn, ops)
    assert conn.execute("SELECT count(*) FROM workflows").fetchone() == (70,)
    assert conn.execute("SELECT count(*) FROM edges").fetchone() == (70,)
    assert conn.execute("SELECT count(*) FROM attempts").fetchone() == (100,)
    latest = conn.execute("SELECT outcome FROM attempts WHERE job_id = 5").fetchone()
    assert latest == ("timed_out",), "rows apply in their order, as one by one"


def test_an_sqlite_before_3_33_gets_one_row_statements(tmp_path: Path) -> None:
    """``UPDATE ... FROM`` came with SQLite 3.33, and before 3.32 a statement held at most
    999 bound values (64 job rows hold about 1,800): an older library writes one row per
    statement, as before many-row statements, instead of failing every commit."""
    from actors.scheduler.store import sqlite_binds

    assert sqlite_binds.rows_per_statement((3, 31, 1)) == 1
    assert sqlite_binds.rows_per_statement((3, 32, 3)) == 1
    assert sqlite_binds.rows_per_statement((3, 33, 0)) == 64
    conn = _file(tmp_path)
    conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 999)  # SQLite < 3.32's default
    old = pytest.MonkeyPatch()
    old.setattr(sqlite_binds, "ROWS_PER_STATEMENT", sqlite_binds.rows_per_statement((3, 31, 1)))
    try:
        table = JobTable(SchedulerConfig())
        jobs, created = _queued(table, 100)
        leased = Ops()
        table.lease_all([(job.id, b"peer") for job in jobs], {b"peer": "w1"}, leased)
        assert not any("FROM (VALUES" in sql for sql, _ in update_statements(leased.updates))
        write_batch(conn, created)
        write_batch(conn, leased)
    finally:
        old.undo()
    statuses = conn.execute("SELECT status, count(*) FROM jobs GROUP BY status").fetchall()
    assert statuses == [("RUNNING", 100)]


async def test_a_large_read_is_made_into_jobs_a_chunk_at_a_time_sharing_their_names(
    tmp_path: Path,
) -> None:
    """A restart reads its whole backlog: every row, in id order, more than one chunk of
    them, and the jobs share one copy of each task and queue name, not one per row."""
    store = sqlite.SqliteStore(str(tmp_path / "c.db"))
    await store.open()
    count = sqlite_rows.READ_CHUNK + 500
    jobs = [
        stored_job(i, QUEUED, task="".join(["send", "_mail"]), queue="".join("mail"))
        for i in range(1, count + 1)
    ]
    await store.commit(Ops(inserts=jobs))
    recovered = await store.recover()
    await store.close()
    live = recovered.live
    assert [job.id for job in live] == list(range(1, count + 1))
    assert all(job.task == "send_mail" and job.task is live[0].task for job in live)
    assert all(job.queue == "mail" and job.queue is live[0].queue for job in live)
