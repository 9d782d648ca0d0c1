"""An online backup of a corral SQLite database, taken from the file itself (``corral
backup PATH``), while a scheduler runs on it or not.

Why from the file and not through the scheduler: the scheduler opens the file in WAL mode
with normal locking, so another connection can read it, and a WAL reader never blocks a
commit. SQLite's backup API copies every page in one step here, inside one read
transaction: the copy is the database as of one commit (a consistent set of jobs), and
the scheduler commits on meanwhile (a checkpoint cannot pass the copy's snapshot until it
ends; the WAL grows by what was committed in the meantime). Through the scheduler, the copy
would run on its one database thread and hold every commit back for its whole length.

The copy is a database of its own: a new identity (``corral_meta``'s database_id and the
file's application_id), so workers that hold leases in the live database never mistake a
restored backup for the database they came from, and the live database's write-ahead log
is refused next to it (``sqlite_file.check_wal_owner``); in rollback-journal mode, so it is
one file.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
import urllib.parse

from actors.errors import StoreDamaged, StoreError
from actors.scheduler.store.sqlite_file import translate


def backup(source: str, target: str) -> tuple[int, int]:
    """Copy the corral database ``source`` to the new file ``target`` (it must not exist);
    returns (the copy's size in bytes, its number of jobs). Raises StoreError, one line,
    and leaves no ``target`` behind, on any failure."""
    if not os.path.isfile(source):
        raise StoreError(source, f"no database at {source} (check --db / CORRAL_DB)")
    try:
        made = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise StoreError(target, f"{target} exists already; give a new path") from None
    except OSError as exc:
        raise StoreError(target, f"cannot create {target}: {exc.strerror}") from None
    os.close(made)
    try:
        jobs = _copy(source, target)
    except BaseException as exc:
        for leftover in (target, target + "-journal", target + "-wal", target + "-shm"):
            if os.path.exists(leftover):
                os.unlink(leftover)
        if isinstance(exc, sqlite3.Error):
            raise translate(exc, source, "back up") from None
        raise
    return os.path.getsize(target), jobs


def _copy(source: str, target: str) -> int:
    uri = f"file:{urllib.parse.quote(os.path.abspath(source))}?mode=ro"
    src = sqlite3.connect(uri, uri=True, timeout=10)
    try:
        if not src.execute("SELECT 1 FROM sqlite_master WHERE name = 'jobs'").fetchone():
            raise StoreDamaged(source, f"{source} is not a corral database (no jobs table)")
        dst = sqlite3.connect(target, isolation_level=None)
        try:
            src.backup(dst)  # every page in one step: one read transaction, one snapshot
            dst.execute("PRAGMA journal_mode=DELETE").fetchall()
            dst.execute(f"PRAGMA application_id={secrets.randbelow(2**31 - 1) + 1}")
            if dst.execute("SELECT 1 FROM sqlite_master WHERE name = 'corral_meta'").fetchone():
                dst.execute(
                    "UPDATE corral_meta SET value = ? WHERE key = 'database_id'",
                    (secrets.token_hex(16),),
                )
            jobs: int = dst.execute("SELECT count(*) FROM jobs").fetchone()[0]
        finally:
            dst.close()
    finally:
        src.close()
    return jobs
