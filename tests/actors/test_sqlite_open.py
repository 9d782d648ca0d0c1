"""Opening an SQLite database the scheduler may not use changes nothing in it, and two
schedulers that reach one file at the same moment do not refuse each other: one of them
starts, the other is refused naming the first."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from pathlib import Path

import pytest

from actors.errors import StoreError
from actors.scheduler.store import sqlite, sqlite_file
from actors.scheduler.store.sqlite import SqliteStore
from actors.scheduler.store.sqlite_file import StoreLocked
from tests.helpers import schema_v1


def header(path: Path) -> tuple[bytes, int, int]:
    """What opening may change in a file it then refuses: the journal mode bytes of the
    header (1, 1 rollback; 2, 2 WAL), its application id and its user version."""
    with sqlite3.connect(path) as conn:
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
    conn.close()
    return path.read_bytes()[18:20], app_id, version


@pytest.mark.parametrize(
    ("user_version", "refusal"),
    [
        (0, "has tables but no corral schema version"),
        # Programs number their own schemas with user_version too: 1 and 2 are corral's
        # versions, but a corral database of any version has a jobs table.
        (1, "not a corral database"),
        (2, "not a corral database"),
    ],
)
async def test_another_programs_database_is_refused_without_being_changed(
    tmp_path: Path, user_version: int, refusal: str
) -> None:
    path = tmp_path / "notes.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE notes (body TEXT)")
        conn.execute("INSERT INTO notes VALUES ('keep me as I am')")
        conn.execute(f"PRAGMA user_version={user_version}")
    conn.close()
    before = header(path), path.read_bytes()
    with pytest.raises(StoreError, match=refusal):
        await SqliteStore(str(path)).open()
    assert header(path) == before[0], "not switched to WAL, no application id written"
    assert path.read_bytes() == before[1], "the same bytes"


@pytest.mark.parametrize("kind", ["new file", "schema 1 file"])
async def test_two_schedulers_reaching_one_file_together_do_not_refuse_each_other(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """Both have read the file (its integrity check) before either writes to it: the
    moment two schedulers started together, or a second one started while the first was
    still checking a large file."""
    path = tmp_path / "c.db"
    if kind == "schema 1 file":
        schema_v1.every_state(path)
    both_checked = threading.Barrier(2, timeout=2)  # in the stores' database threads
    check = sqlite_file.quick_check

    def quick_check_then_meet(conn: sqlite3.Connection, where: str) -> None:
        check(conn, where)
        with contextlib.suppress(threading.BrokenBarrierError):
            both_checked.wait()  # unless the other never got this far: it did not share it

    monkeypatch.setattr(sqlite_file, "quick_check", quick_check_then_meet)
    stores = [SqliteStore(str(path)), SqliteStore(str(path))]
    try:
        outcomes = await asyncio.gather(*(s.open() for s in stores), return_exceptions=True)
        refused = [o for o in outcomes if o is not None]
        assert len(refused) == 1, f"exactly one starts: {outcomes}"
        assert isinstance(refused[0], StoreLocked), refused[0]
    finally:
        for store in stores:
            await store.close()
    if kind == "schema 1 file":
        assert header(path)[2] == 2, "upgraded once"


async def test_a_scheduler_refused_in_a_collision_tries_once_more_and_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two schedulers started in the same instant can each take the read lock the other
    then waits on, so both are refused. Here the other one holds the file at the first
    try and lets go during the pause before the second (as a refused one does)."""
    path = tmp_path / "c.db"
    first = SqliteStore(str(path))
    await first.open()
    pauses: list[None] = []

    async def the_other_gives_up() -> None:
        pauses.append(None)
        await first.close()

    monkeypatch.setattr(sqlite, "retry_pause", the_other_gives_up)
    second = SqliteStore(str(path))
    try:
        await second.open()
    finally:
        await second.close()
        await first.close()
    assert len(pauses) == 1


async def test_a_file_another_scheduler_keeps_is_refused_after_the_second_try(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "c.db"
    first = SqliteStore(str(path))
    await first.open()
    pauses: list[None] = []

    async def pause() -> None:
        pauses.append(None)

    monkeypatch.setattr(sqlite, "retry_pause", pause)
    try:
        with pytest.raises(StoreLocked, match="in use by another corral scheduler"):
            await SqliteStore(str(path)).open()
    finally:
        await first.close()
    assert len(pauses) == 1, "one more try, not a loop"
