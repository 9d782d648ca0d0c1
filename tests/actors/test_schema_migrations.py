"""Numbered schema steps: a new file gets them all, an older one the missing ones in one
transaction, a current one nothing, a newer one is refused untouched, and a step that fails
leaves the file as it was. Databases of the release before migrations come from the DDL kept
in tests/fixtures/schema_v1.sql (tests/helpers/schema_v1.py), not from the code's step 1."""

from __future__ import annotations

import logging
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from actors.errors import StoreError
from actors.scheduler.store import sqlite_schema
from actors.scheduler.store.sqlite import SqliteStore as Store
from actors.scheduler.store.sqlite_schema import SCHEMA_VERSION, STEPS, migrate
from tests.helpers import schema_v1

FAILED_IDS = "SELECT id FROM jobs WHERE status = 'FAILED'"  # requeue --all-failed
# `corral jobs --status FAILED`, as actors/scheduler/requests.py lists jobs
LIST_BY_STATUS = "SELECT id FROM jobs WHERE status = ? ORDER BY id DESC LIMIT ?"


def read(path: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute(sql, params).fetchall()
    conn.close()
    return rows


def version(path: Path) -> int:
    return int(read(path, "PRAGMA user_version")[0][0])


def schema_of(path: Path) -> list[tuple[Any, ...]]:
    return read(path, "SELECT type, name, sql FROM sqlite_master ORDER BY name")


def contents(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    tables = ("jobs", "workflows", "edges", "attempts")
    return {t: read(path, f"SELECT * FROM {t} ORDER BY 1, 2") for t in tables}


def file_state(path: Path) -> tuple[bytes, int, bool]:
    """The file's bytes, its modification time, and whether a write-ahead log is beside it."""
    return path.read_bytes(), os.stat(path).st_mtime_ns, os.path.exists(f"{path}-wal")


def test_step_1_is_the_schema_the_release_before_migrations_shipped() -> None:
    """A shipped step never changes: new files and upgraded ones must end up alike."""
    assert STEPS[0] == schema_v1.V1_DDL
    assert SCHEMA_VERSION == len(STEPS) == 10


def test_a_new_file_gets_every_step_and_reports_no_upgrade(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    conn = sqlite3.connect(path, isolation_level=None)
    assert migrate(conn, str(path)) is None, "a new database is built, not upgraded"
    conn.close()
    assert version(path) == SCHEMA_VERSION
    names = {name for _, name, _ in schema_of(path)}
    assert {"jobs", "workflows", "edges", "attempts", "jobs_live", "jobs_finished"} <= names
    assert "jobs_failed" not in names, "dropped by step 10: jobs_finished serves its reads"


def test_a_schema_1_database_is_upgraded_in_place_with_every_row_kept(tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    schema_v1.every_state(path)
    before = contents(path)
    conn = sqlite3.connect(path, isolation_level=None)
    assert migrate(conn, str(path)) == 1
    conn.close()
    assert version(path) == SCHEMA_VERSION
    after = contents(path)
    # Step 4 adds the submitter's key to every job, empty for jobs from before keys; step 5
    # its concurrency key (none) and cap (0), and an empty table of rate limits.
    assert after["jobs"] == [(*row, "", "", 0) for row in before.pop("jobs")]
    assert after.pop("limits", []) == []
    assert {t: rows for t, rows in after.items() if t != "jobs"} == before
    indexes = {name for kind, name, _ in schema_of(path) if kind == "index"}
    assert "jobs_finished" in indexes
    assert "jobs_failed" not in indexes
    [[database_id]] = read(path, "SELECT value FROM corral_meta WHERE key = 'database_id'")
    assert len(database_id) == 32, "an upgraded database gets its identity too"


def test_dead_letters_are_found_through_their_partial_index(tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    schema_v1.every_state(path)
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn, str(path))
    for sql, params in ((FAILED_IDS, ()), (LIST_BY_STATUS, ("FAILED", 100))):
        plan = " ".join(row[-1] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params))
        # The partial index reads only the failed rows: since step 9 spells jobs_finished's
        # condition as ORs, SQLite sees that status = 'FAILED' implies it (step 10 dropped
        # jobs_failed, which it had preferred already).
        assert "INDEX jobs_finished (status=?)" in plan, (sql, plan)
    assert conn.execute(FAILED_IDS).fetchall() == [(schema_v1.FAILED_ID,)]
    conn.close()


def test_an_up_to_date_database_gets_nothing_applied(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn, str(path))
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    assert migrate(conn, str(path)) is None
    conn.close()
    assert statements == ["BEGIN IMMEDIATE", "PRAGMA user_version", "COMMIT"]


async def test_the_store_logs_one_line_for_an_upgrade_and_none_when_current(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "v1.db"
    schema_v1.every_state(path)
    caplog.set_level(logging.INFO, logger="corral.store")
    for _ in range(2):
        store = Store(str(path))
        await store.open()
        await store.close()
    upgrades = [r.getMessage() for r in caplog.records if "upgraded" in r.getMessage()]
    assert upgrades == [f"upgraded database {path} from schema 1 to {SCHEMA_VERSION}"]
    assert version(path) == SCHEMA_VERSION


async def test_a_database_newer_than_the_code_is_refused_and_left_untouched(
    tmp_path: Path,
) -> None:
    path = tmp_path / "future.db"
    store = Store(str(path))
    await store.open()
    await store.close()
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    conn.close()
    before = file_state(path)
    with pytest.raises(StoreError) as refused:
        await Store(str(path)).open()
    message = str(refused.value)
    assert f"schema {SCHEMA_VERSION + 1}" in message, message
    assert f"knows up to {SCHEMA_VERSION}" in message, message
    assert str(path) in message, message
    assert "newer corral" in message, message
    assert file_state(path) == before


async def test_a_step_that_fails_midway_leaves_the_file_at_its_old_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "v1.db"
    schema_v1.every_state(path)
    before, old_schema, old_rows = file_state(path), schema_of(path), contents(path)
    # Step 2 (real) runs, then step 3 changes a table and a row before it fails.
    bad = """
    CREATE TABLE leftovers (x INTEGER);
    UPDATE jobs SET queue = 'moved';
    INSERT INTO no_such_table VALUES (1);
    """
    monkeypatch.setattr(sqlite_schema, "STEPS", [*STEPS, bad])
    with pytest.raises(StoreError) as refused:
        await Store(str(path)).open()
    message = str(refused.value)
    assert f"from schema 1 to {SCHEMA_VERSION + 1}" in message, message
    assert "no_such_table" in message, message
    assert "left unchanged at schema 1" in message, message
    assert version(path) == 1
    assert schema_of(path) == old_schema, "no jobs_failed, no leftovers"
    assert contents(path) == old_rows
    assert file_state(path)[0] == before[0], "the same bytes"


def test_tables_without_a_version_are_refused_not_adopted(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE notes (body TEXT)")
    conn.close()
    conn = sqlite3.connect(path, isolation_level=None)
    with pytest.raises(StoreError, match="has tables but no corral schema version"):
        migrate(conn, str(path))
    conn.close()
    assert version(path) == 0
    assert [name for _, name, _ in schema_of(path)] == ["notes"]
