"""How the SQLite store writes: the mapping between a job and its row, and the one
transaction a batch of operations becomes (run in aiosqlite's thread, or inline when small).
The statements and parameter rows of new and changed jobs are built in ``sqlite_binds``
(plain values only: issue 19).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any, TypeVar

import aiosqlite
import msgspec

from actors.config import DEFAULT_DURABILITY
from actors.errors import StoreInconsistent
from actors.scheduler.job import Job, SharedNames, job_options
from actors.scheduler.ops import (
    ATTEMPT_FIELDS,
    SCHEDULE_FIELDS,
    WORKFLOW_FIELDS,
    Ops,
)
from actors.scheduler.store import sqlite_file
from actors.scheduler.store.base import STATES, UnreadableRow
from actors.scheduler.store.sqlite_binds import (
    insert_statements,
    many_values,
    update_statements,
)
from actors.scheduler.store.sqlite_schema import JOB_COLUMNS
from transport import protocol as wire

T = TypeVar("T")

_unpack_ids = msgspec.msgpack.Decoder(list[int]).decode
_COLUMNS = tuple(c.strip() for c in JOB_COLUMNS.split(","))

INSERT_ATTEMPT = (
    f"INSERT OR REPLACE INTO attempts ({', '.join(ATTEMPT_FIELDS)}) "
    f"VALUES ({', '.join('?' * len(ATTEMPT_FIELDS))})"
)
INSERT_WORKFLOW = (
    f"INSERT INTO workflows ({', '.join(WORKFLOW_FIELDS)}) "
    f"VALUES ({', '.join('?' * len(WORKFLOW_FIELDS))})"
)
INSERT_EDGE = "INSERT OR IGNORE INTO edges (parent, child) VALUES (?, ?)"
_DELETE_JOB = "DELETE FROM jobs WHERE id = ? AND status = ?"
# A rate limit created, or changed keeping its bucket's state (Ops.limits).
SET_LIMIT = (
    "INSERT INTO limits (name, count, period, burst, tat, declared) VALUES (?, ?, ?, ?, 0, ?) "
    "ON CONFLICT (name) DO UPDATE SET count = excluded.count, period = excluded.period, "
    "burst = excluded.burst, declared = excluded.declared"
)


def _swap(states: list[tuple[str, float]]) -> list[tuple[float, str]]:
    return [(tat, name) for name, tat in states]


WRITE_SCHEDULE = (
    f"INSERT OR REPLACE INTO schedules ({', '.join(SCHEDULE_FIELDS)}) "
    f"VALUES ({', '.join('?' * len(SCHEDULE_FIELDS))})"
)
_DELETE_SCHEDULE = "DELETE FROM schedules WHERE name = ?"


_NULL: type = type(None)
_NUMBER: frozenset[type] = frozenset((int, float))
_NUMBER_OR_NULL: frozenset[type] = frozenset((int, float, _NULL))
_TEXT_OR_NULL: frozenset[type] = frozenset((str, _NULL))
_BYTES_OR_NULL: frozenset[type] = frozenset((bytes, _NULL))
_INT_OR_NULL: frozenset[type] = frozenset((int, _NULL))

_INT: frozenset[type] = frozenset((int,))
_TEXT: frozenset[type] = frozenset((str,))
_BYTES: frozenset[type] = frozenset((bytes,))

# What each column may hold, in ``JOB_COLUMNS`` order: what ``_readable`` checks, spelled
# out for the message that names the first column that fails.
_KINDS: tuple[tuple[frozenset[type], str], ...] = (
    (_INT, "an integer"),  # id
    (_TEXT, "text"),  # task
    (_BYTES, "a blob"),  # args
    (_BYTES, "a blob"),  # kwargs
    (_INT, "an integer"),  # priority
    (_TEXT, "text"),  # queue
    (_BYTES, "a blob"),  # depends_on
    (_INT, "an integer"),  # max_retries
    (_TEXT_OR_NULL, "text or NULL"),  # idempotency_key
    (_NUMBER_OR_NULL, "a number or NULL"),  # timeout
    (_NUMBER, "a number"),  # created_at
    (_TEXT, "text"),  # status
    (_INT, "an integer"),  # attempts
    (_INT, "an integer"),  # token
    (_TEXT_OR_NULL, "text or NULL"),  # worker
    (_NUMBER_OR_NULL, "a number or NULL"),  # started_at
    (_NUMBER_OR_NULL, "a number or NULL"),  # finished_at
    (_NUMBER, "a number"),  # not_before
    (_BYTES_OR_NULL, "a blob or NULL"),  # result
    (_TEXT_OR_NULL, "text or NULL"),  # error
    (_NUMBER_OR_NULL, "a number or NULL"),  # backoff_base
    (_NUMBER_OR_NULL, "a number or NULL"),  # backoff_factor
    (_NUMBER_OR_NULL, "a number or NULL"),  # backoff_cap
    (_INT_OR_NULL, "an integer or NULL"),  # workflow_id
    (_TEXT_OR_NULL, "text or NULL"),  # step
    (_TEXT, "text"),  # owner
    (_TEXT, "text"),  # concurrency_key
    (_INT, "an integer"),  # max_concurrent
)


def _readable(r: tuple[Any, ...]) -> bool:
    """Every value of row ``r`` of the type corral writes there (half a microsecond: one
    expression, no loop; ``_KINDS`` says the same for the message)."""
    return (
        type(r[1]) is str and type(r[2]) is bytes and type(r[3]) is bytes
        and type(r[4]) is int and type(r[5]) is str and type(r[6]) is bytes
        and type(r[7]) is int and type(r[8]) in _TEXT_OR_NULL
        and type(r[9]) in _NUMBER_OR_NULL and type(r[10]) in _NUMBER
        and r[11] in STATES and type(r[12]) is int and type(r[13]) is int
        and type(r[14]) in _TEXT_OR_NULL and type(r[15]) in _NUMBER_OR_NULL
        and type(r[16]) in _NUMBER_OR_NULL and type(r[17]) in _NUMBER
        and type(r[18]) in _BYTES_OR_NULL and type(r[19]) in _TEXT_OR_NULL
        and type(r[20]) in _NUMBER_OR_NULL and type(r[21]) in _NUMBER_OR_NULL
        and type(r[22]) in _NUMBER_OR_NULL and type(r[23]) in _INT_OR_NULL
        and type(r[24]) in _TEXT_OR_NULL and type(r[25]) is str and type(r[26]) is str
        and type(r[27]) is int
    )  # fmt: skip


def _problem(row: tuple[Any, ...]) -> str:
    """What is wrong with a row ``_readable`` refused, naming its job and column."""
    for column, value, (types, what) in zip(_COLUMNS, row, _KINDS, strict=True):
        if type(value) not in types:
            return f"job {row[0]!r}: {column} is {_shown(value)}, not {what}"
    return f"job {row[0]!r}: status {_shown(row[11])} is not a job state"


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:37]}..."


def job_from_row(row: tuple[Any, ...]) -> Job:
    """Rebuild a job from a ``JOB_COLUMNS`` row; raises UnreadableRow for a row corral could
    not have written."""
    if not _readable(row):
        raise UnreadableRow(_problem(row))
    (job_id, task, args, kwargs, priority, queue, depends_on, max_retries, key, timeout,
     created_at, status, attempts, token, worker, started_at, finished_at, not_before,
     result, error, base, factor, cap, workflow_id, step, owner, concurrency_key,
     max_concurrent) = row  # fmt: skip
    try:
        parents = tuple(_unpack_ids(depends_on))
    except msgspec.DecodeError:
        raise UnreadableRow(
            f"job {job_id}: depends_on {_shown(depends_on)} is not a list of job ids"
        ) from None
    return Job(
        id=job_id,
        task=task,
        args=args,
        kwargs=kwargs,
        priority=priority,
        queue=queue,
        depends_on=parents,
        max_retries=max_retries,
        created_at=created_at,
        status=STATES[status],
        attempts=attempts,
        token=token,
        worker=worker,
        started_at=started_at,
        finished_at=finished_at,
        not_before=not_before,
        result=None if result is None else msgspec.Raw(result),
        error=error,
        owner=owner,
        options=job_options(
            key,
            timeout,
            wire.Backoff(base, factor, cap) if base is not None else None,
            workflow_id,
            step,
            concurrency_key,
            max_concurrent,
        ),
    )


# Rows read and made into jobs this many at a time (``read_jobs``).
READ_CHUNK = 2_000


def read_jobs(conn: sqlite3.Connection, sql: str, params: tuple[Any, ...]) -> list[Job]:
    """The jobs of a ``SELECT JOB_COLUMNS ...``; runs in the database thread. The rows
    are made into jobs a chunk at a time, so a large read (a restart's backlog) never holds
    all its rows beside the jobs made of them, and the jobs share one copy of each task
    and queue name instead of one per row (about 110 bytes each)."""
    names = SharedNames()
    jobs: list[Job] = []
    cursor = conn.execute(sql, params)
    while rows := cursor.fetchmany(READ_CHUNK):
        jobs += [names.share(job_from_row(row)) for row in rows]
    return jobs


def write_batch(conn: sqlite3.Connection, ops: Ops) -> None:
    """One transaction for a whole group of writes; runs in the database thread."""
    with sqlite_file.transaction(conn):
        if ops.workflows:
            _insert_all(conn, INSERT_WORKFLOW, ops.workflows)
        if ops.inserts:
            for sql, params in insert_statements(ops.inserts):
                conn.execute(sql, params)
        if ops.edges:
            _insert_all(conn, INSERT_EDGE, ops.edges)
        if ops.updates:
            # Only the count of changed rows is kept, not a cursor: a cursor left in the frame
            # of a raised StoreInconsistent keeps its statement alive, and SQLite then keeps
            # the file (and its exclusive lock) open after close() until the garbage collector
            # runs. A compare-and-swap that misses changes no row: the count falls short.
            before = conn.total_changes
            for sql, params in update_statements(ops.updates):
                conn.execute(sql, params)
            matched = conn.total_changes - before
            if matched != len(ops.updates):
                raise StoreInconsistent(
                    f"compare-and-swap matched {matched} of {len(ops.updates)} job rows"
                )
        if ops.attempts:
            _insert_all(conn, INSERT_ATTEMPT, ops.attempts)
        if ops.deletes:
            _delete(conn, ops.deletes)
        for name, rate in ops.limits:
            if rate is None:
                conn.execute("DELETE FROM limits WHERE name = ?", (name,))
            else:
                conn.execute(SET_LIMIT, (name, *rate))
        if ops.limit_states:
            conn.executemany("UPDATE limits SET tat = ? WHERE name = ?", _swap(ops.limit_states))
        for name, row in ops.schedules:  # a few per batch at most: in order, one by one
            if row is None:
                conn.execute(_DELETE_SCHEDULE, (name,))
            else:
                conn.execute(WRITE_SCHEDULE, row)


def _insert_all(conn: sqlite3.Connection, one_row: str, rows: list[Any]) -> None:
    for sql, params in many_values(one_row, rows):
        conn.execute(sql, params)


def _delete(conn: sqlite3.Connection, deletes: list[tuple[int, str]]) -> None:
    matched = conn.executemany(_DELETE_JOB, deletes).rowcount  # no cursor kept: see above
    if matched != len(deletes):
        raise StoreInconsistent(
            f"compare-and-swap matched {matched} of {len(deletes)} deleted job rows"
        )
    ids = [(job_id,) for job_id, _status in deletes]
    conn.executemany("DELETE FROM attempts WHERE job_id = ?", ids)
    conn.executemany("DELETE FROM edges WHERE parent = ?", ids)
    conn.executemany("DELETE FROM edges WHERE child = ?", ids)


# The pragmas that set up the session only: nothing of them reaches the file, so the store
# runs them before it has decided the file is one it may use (``SqliteStore.open``).
# Normal locking mode (SQLite's default), not EXCLUSIVE: other programs may then read the
# file while the scheduler runs (WAL readers); ``sqlite_file.FileLock`` keeps out a second
# scheduler. The busy timeout covers the moments a reader's connection holds a lock a
# commit needs (rebuilding the shared WAL index when it opens first): milliseconds.
SESSION_PRAGMAS = ("PRAGMA busy_timeout=500",)


def connection_pragmas(durability: str = DEFAULT_DURABILITY) -> list[str]:
    """How the store sets up its connection, in order (bench/idle.py times the same): the
    ``SESSION_PRAGMAS``, then those that change the file (WAL is kept in its header)."""
    sync = "FULL" if durability == "full" else "NORMAL"
    return [
        *SESSION_PRAGMAS,
        "PRAGMA journal_mode=WAL",
        f"PRAGMA synchronous={sync}",
        # 16 MiB of page cache holds the hot B-tree pages of the jobs table: jobs go in and
        # change in id order, near the tree's right edge. 64 MiB bought no speed and cost
        # 53 MB of the scheduler's memory with a 1M-job backlog (bench/README, part 8).
        "PRAGMA cache_size=-16384",
        "PRAGMA wal_autocheckpoint=0",  # the store checkpoints itself (sqlite_chain)
    ]


async def in_db_thread(db: aiosqlite.Connection, fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn(sqlite3_connection, *args)`` in aiosqlite's own thread, in one hop.

    Each awaited aiosqlite call costs a thread hand-off (about 0.1 ms); a group commit
    is five or more statements, so it goes over as one function instead. This uses
    aiosqlite's internal ``_execute``/``_conn`` (unchanged from 0.17 to 0.22, and
    pyproject pins the range); ``SqliteStore.open`` checks they exist and says so if not."""
    result: T = await db._execute(lambda: fn(db._conn, *args))  # type: ignore[no-untyped-call]
    return result
