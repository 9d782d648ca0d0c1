"""Opening an SQLite database the scheduler may not use changes nothing in it, and two
schedulers that reach one file at the same moment do not refuse each other: one of them
starts, the other is refused naming the first."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest

from actors.errors import StoreError
from actors.scheduler.store import sqlite, sqlite_file
from actors.scheduler.store.sqlite import SqliteStore
from actors.scheduler.store.sqlite_file import StoreLocked
from actors.scheduler.store.sqlite_schema import SCHEMA_VERSION
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
        # Programs number their own schemas with user_version too: 1 to 4 are corral's
        # versions, but a corral database of any version has a jobs table.
        (1, "not a corral database"),
        (2, "not a corral database"),
        (3, "not a corral database"),
        (4, "not a corral database"),
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
async def test_a_second_scheduler_reaching_the_file_during_the_first_ones_checks_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """The first one is still checking the file (its integrity check: seconds for a large
    one) when the second one reaches it. The first one must start; when both had read the
    file before either wrote to it, each held the read lock the other's write lock waited
    on, and both were refused."""
    path = tmp_path / "c.db"
    if kind == "schema 1 file":
        schema_v1.every_state(path)
    meeting = threading.Condition()  # the stores' database threads meet here
    checked: list[str] = []
    refused_once: list[None] = []
    check = sqlite_file.quick_check

    def quick_check_then_wait(conn: sqlite3.Connection, where: str) -> None:
        """The check, then hold on until the other store was refused once, or has read
        the file too."""
        check(conn, where)
        with meeting:
            checked.append(where)
            meeting.notify_all()
            assert meeting.wait_for(lambda: len(checked) == 2 or refused_once, timeout=30)

    translate = sqlite_file.translate

    def noting_refusals(exc: BaseException, where: str, doing: str) -> StoreError:
        error = translate(exc, where, doing)
        if isinstance(error, StoreLocked):
            with meeting:
                refused_once.append(None)
                meeting.notify_all()
        return error

    acquire = sqlite_file.FileLock.acquire

    def noting_lock_refusals(lock: sqlite_file.FileLock) -> None:
        """The file lock refuses the second one before it reads the file (no SQLite error)."""
        try:
            acquire(lock)
        except StoreLocked:
            noting_refusals(sqlite3.OperationalError("database is locked"), lock.path, "open")
            raise

    monkeypatch.setattr(sqlite_file, "quick_check", quick_check_then_wait)
    monkeypatch.setattr(sqlite_file, "translate", noting_refusals)
    monkeypatch.setattr(sqlite_file.FileLock, "acquire", noting_lock_refusals)
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
        assert header(path)[2] == SCHEMA_VERSION, "upgraded once"


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
