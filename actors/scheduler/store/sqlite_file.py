"""The database file itself: opening it, checking it is whole and still the file at its
path, and turning SQLite's errors into one clear StoreError.

Why the identity check: SQLite keeps writing to the file it opened. If the folder is
deleted (or the file moved away and replaced) while the scheduler runs, every commit
lands in a file that no longer has a name, is acknowledged, and vanishes at the next
start. ``FileIdentity`` remembers the device and inode of the database and of its
write-ahead log at open and compares them with what the path names now.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import secrets
import sqlite3
from collections.abc import Iterator

import aiosqlite

from actors.errors import StoreDamaged, StoreError, StoreFull, StoreInconsistent, StoreLost


class StoreLocked(StoreError):
    """Raised at start-up when another scheduler already holds the database file."""

    def __init__(self, path: str) -> None:
        super().__init__(
            path,
            f"database {path} is in use by another corral scheduler; stop it first or pass --db",
        )


class FileLock:
    """The one-scheduler-per-file guard: an ``flock`` on the database file itself, held
    from before SQLite opens the file until after it closed it.

    SQLite's own locks cannot be this guard any more: the store opens the file in WAL mode
    with normal locking, so that other programs (``sqlite3 corral.db``, ``corral backup``)
    may read it while the scheduler runs, and SQLite then lets a second writer in too.
    ``flock`` locks are independent of the POSIX record locks SQLite takes (Linux, BSD,
    macOS), and this descriptor is closed only after SQLite closed the file, so closing it
    cannot drop SQLite's locks (POSIX drops a process's record locks on any close)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise StoreLocked (another scheduler holds it) or StoreError."""
        _check_folder(self.path)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise StoreError(
                self.path, f"cannot open database {self.path}: {exc.strerror}"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise StoreLocked(self.path) from None
            raise StoreError(
                self.path, f"cannot lock database {self.path}: {exc.strerror}"
            ) from None
        self.fd = fd

    def release(self) -> None:
        """Let go (idempotent); only after SQLite closed the file."""
        fd, self.fd = self.fd, None
        if fd is not None:
            os.close(fd)  # closing releases the flock


def _identity(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


class FileIdentity:
    """Device and inode of the database file and its ``-wal`` file, taken at open."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.wal = path + "-wal"
        self.db_id = _identity(path)
        # In WAL mode SQLite keeps the -wal file while the scheduler's connection is open
        # (it resets it after a checkpoint, it does not unlink it; a reader that closes is
        # not the last connection, so it does not remove it either).
        self.wal_id = _identity(self.wal)

    def check(self) -> None:
        """Raise StoreLost if the path no longer names the file being written."""
        for name, expected in ((self.path, self.db_id), (self.wal, self.wal_id)):
            if expected is None:
                continue
            try:
                now = _identity(name)
            except OSError as exc:  # e.g. a folder replaced by a file
                now = None
                reason = os.strerror(exc.errno or errno.EIO)
            else:
                reason = "deleted" if now is None else "replaced by another file"
            if now != expected:
                raise StoreLost(
                    self.path,
                    f"database file {name} was {reason} while the scheduler ran; stopping "
                    "before acknowledging anything more (restore the file or its folder, "
                    "then restart)",
                )


def _check_folder(path: str) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise StoreError(
            path,
            f"cannot open database {path}: folder {folder} does not exist "
            "(create it, or pass another --db / CORRAL_DB)",
        )


async def connect(path: str) -> aiosqlite.Connection:
    """Open ``path`` with aiosqlite; a failure raises StoreError and leaves no thread."""
    _check_folder(path)  # SQLite would only say "unable to open database file"
    # check_same_thread=False: small group commits run inline on the event loop.
    pending = aiosqlite.connect(path, isolation_level=None, check_same_thread=False)
    try:
        return await pending
    except BaseException as exc:
        # aiosqlite stops its thread after a failed connect without waiting for it; the
        # thread would then report to a closed event loop (a traceback at exit).
        pending._thread.join(timeout=5)
        if isinstance(exc, sqlite3.Error):
            raise translate(exc, path, "open") from None
        raise


# The constraint failures that mean "this row exists already" (a primary key or a unique
# idempotency key); any other constraint failure is a plain write error.
_CLASHES = (sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY, sqlite3.SQLITE_CONSTRAINT_UNIQUE)


def write_error(exc: sqlite3.Error | OSError, path: str) -> StoreError | StoreInconsistent:
    """What a failed commit means: an insert of a row the file holds already (a job or
    workflow id, an idempotency key) is StoreInconsistent, as a missed compare-and-swap
    is, since the file disagrees with the scheduler's memory; anything else a StoreError."""
    if isinstance(exc, sqlite3.IntegrityError) and exc.sqlite_errorcode in _CLASHES:
        return StoreInconsistent(f"an insert clashed with a row it holds: {exc}")
    return translate(exc, path, "write")


def translate(exc: BaseException, path: str, doing: str) -> StoreError:
    """One StoreError naming the file and the cause, for an error from SQLite or the OS."""
    if isinstance(exc, StoreError):
        return exc
    code = getattr(exc, "sqlite_errorcode", None)
    text = str(exc)
    if code == sqlite3.SQLITE_FULL or (isinstance(exc, OSError) and exc.errno == errno.ENOSPC):
        return StoreFull(
            path,
            f"cannot {doing} database {path}: the disk is full ({text}); nothing more was "
            "acknowledged; free space, then restart",
        )
    if code == sqlite3.SQLITE_NOTADB or "file is not a database" in text:
        return StoreDamaged(
            path,
            f"{path} is not an SQLite database; point --db / CORRAL_DB at a corral "
            "database or a new file",
        )
    if code == sqlite3.SQLITE_CORRUPT:
        return StoreDamaged(path, f"database {path} is damaged ({text}); restore a backup")
    if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED) or "locked" in text:
        return StoreLocked(path)
    if code == sqlite3.SQLITE_READONLY:
        return StoreError(path, f"cannot {doing} database {path}: it is read-only ({text})")
    if code == sqlite3.SQLITE_CANTOPEN:
        return StoreError(
            path, f"cannot {doing} database {path}: {text} (check the path and permissions)"
        )
    return StoreError(path, f"cannot {doing} database {path}: {text}")


# The first 4 bytes of a write-ahead log (big-endian; the last bit names the checksum's
# byte order); the header is 32 bytes and each frame 24 bytes plus one page.
WAL_MAGIC = (0x377F0682, 0x377F0683)
WAL_HEADER_BYTES = 32
WAL_FRAME_HEADER_BYTES = 24


def check_wal(path: str) -> str | None:
    """Look at ``path``-wal before SQLite opens it (SQLite ignores a WAL whose header is
    damaged, silently dropping every commit in it, and then overwrites it).

    Raises StoreDamaged when the header is not a WAL header (overwritten). Returns a
    warning when the file ends inside a frame: it was truncated (or the machine lost
    power mid-write, which loses nothing acknowledged); commits after the cut are lost,
    and refusing would not bring them back. Returns None for a sound or absent WAL."""
    wal = path + "-wal"
    try:
        with open(wal, "rb") as f:
            header = f.read(WAL_HEADER_BYTES)
            size = os.fstat(f.fileno()).st_size
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StoreError(path, f"cannot read write-ahead log {wal}: {exc.strerror}") from None
    if len(header) < WAL_HEADER_BYTES or not header.strip(b"\0"):
        return None  # empty, or created and never written: nothing was committed in it
    magic = int.from_bytes(header[:4], "big")
    page_size = int.from_bytes(header[8:12], "big")
    if magic not in WAL_MAGIC or not 512 <= page_size <= 65536:
        raise StoreDamaged(
            path,
            f"write-ahead log {wal} is damaged (its header is not SQLite's): it may hold "
            "commits the database file lacks; restore it (or the database) from a backup, "
            "or move it aside to start from the database file alone",
        )
    frame = WAL_FRAME_HEADER_BYTES + page_size
    partial = (size - WAL_HEADER_BYTES) % frame
    if partial:
        return (
            f"write-ahead log {wal} ends inside a frame ({partial} of {frame} bytes): a write "
            "that never finished was discarded. After a kill or crash mid-commit this is "
            "normal and loses nothing acknowledged; if the file was cut short, commits after "
            "the cut are lost (see the last commit time in the start line)"
        )
    return None


# Each database gets its own random id (SQLite's application_id: 4 bytes at offset 68 of
# the file's header), written into the file itself at once. A write-ahead log copied from
# another database carries that database's page 1, so the id read through SQLite then
# differs from the one in the file: the log is not this database's.
SQLITE_MAGIC = b"SQLite format 3\0"
APPLICATION_ID_OFFSET = 68


def file_database_id(path: str) -> int:
    """The id in the database file's own header (0: none yet, or no such file); read
    before SQLite opens the file and replays its write-ahead log."""
    try:
        with open(path, "rb") as f:
            header = f.read(100)
    except OSError:
        return 0  # missing or unreadable: connect() names the problem
    if len(header) < 100 or not header.startswith(SQLITE_MAGIC):
        return 0
    return int.from_bytes(header[APPLICATION_ID_OFFSET : APPLICATION_ID_OFFSET + 4], "big")


def wal_database_id(path: str) -> int:
    """The id in the newest copy of page 1 in ``path``-wal (0: none there), read from the
    file before SQLite replays it: only frames of the log's current generation (their
    salts match its header) count."""
    return _read_wal(path)[0]


def wal_frames(path: str) -> int:
    """How many frames of its current generation ``path``-wal holds (0: none, or no log)."""
    return _read_wal(path)[1]


def _read_wal(path: str) -> tuple[int, int]:
    """(the newest page 1's database id, the current generation's frames) of the log."""
    try:
        with open(path + "-wal", "rb") as f:
            header = f.read(WAL_HEADER_BYTES)
            if len(header) < WAL_HEADER_BYTES:
                return 0, 0
            page_size = int.from_bytes(header[8:12], "big")
            salts = header[16:24]
            frame = WAL_FRAME_HEADER_BYTES + page_size
            size = os.fstat(f.fileno()).st_size
            newest = frames = 0
            for offset in range(WAL_HEADER_BYTES, size - frame + 1, frame):
                f.seek(offset)
                head = f.read(WAL_FRAME_HEADER_BYTES)
                if head[8:16] != salts:
                    break  # the rest is left over from an earlier generation of the log
                frames += 1
                if int.from_bytes(head[:4], "big") == 1:
                    f.seek(offset + WAL_FRAME_HEADER_BYTES + APPLICATION_ID_OFFSET)
                    newest = int.from_bytes(f.read(4), "big")
            return newest, frames
    except OSError:
        return 0, 0  # missing or unreadable: check_wal and connect() speak of that


def check_wal_owner(path: str) -> None:
    """Refuse a write-ahead log that belongs to another database, before SQLite replays
    it (and, on closing, would write it into this file), and one that holds commits while
    its database file is missing or empty: SQLite would start a new database and reset
    the log, and with it every job committed since the last checkpoint."""
    theirs, frames = _read_wal(path)
    if frames and _missing_or_empty(path):
        raise StoreDamaged(
            path,
            f"write-ahead log {path}-wal holds {frames} page(s) of commits but the database "
            f"file {path} is missing or empty: restore the file (the log goes with it), or "
            "move the -wal file aside to start a new database",
        )
    mine = file_database_id(path)
    if mine and theirs and mine != theirs:
        raise StoreDamaged(
            path,
            f"write-ahead log {path}-wal belongs to another database (id {theirs:08x}, this "
            f"file's {mine:08x}): it would replace this database's jobs; move it aside (or "
            "restore this database's own) and start again",
        )


def _missing_or_empty(path: str) -> bool:
    try:
        return os.path.getsize(path) == 0
    except FileNotFoundError:
        return True
    except OSError:
        return False  # unreadable: connect() names that


def give_database_id(conn: sqlite3.Connection) -> None:
    """A database without an id (new, or from before ids) gets one, written into the
    file itself at once (a checkpoint), where check_wal_owner reads it."""
    if conn.execute("PRAGMA application_id").fetchone()[0] == 0:
        conn.execute(f"PRAGMA application_id={secrets.randbelow(2**31 - 1) + 1}")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()


def quick_check(conn: sqlite3.Connection, path: str) -> None:
    """Refuse a database whose pages do not hold together (``PRAGMA quick_check``)."""
    rows = [" ".join(str(row[0]).split()) for row in conn.execute("PRAGMA quick_check(5)")]
    if rows != ["ok"]:
        raise StoreDamaged(
            path,
            f"database {path} failed its integrity check ({'; '.join(rows)[:300]}); "
            "restore a backup, or move it and its -wal file aside to start empty",
        )


async def close_quietly(db: aiosqlite.Connection | None) -> None:
    """Close, and stop aiosqlite's thread, even when the file is gone or the disk full:
    the caller is already stopping for a reason it has reported."""
    if db is None:
        return
    with contextlib.suppress(sqlite3.Error, ValueError, OSError):
        await db.close()  # stops the thread in its finally, even when closing failed
    # The thread replies, then exits: wait for that, so nothing outlives the store.
    db._thread.join(timeout=5)


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection, begin: str = "BEGIN") -> Iterator[None]:
    """One transaction: ``begin``, the block, COMMIT; on any failure a ROLLBACK, unless the
    failed COMMIT already rolled back (a ROLLBACK then raises "no transaction is active"
    and would hide the real cause), and the failure goes on."""
    conn.execute(begin)
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        raise
