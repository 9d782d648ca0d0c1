"""The SQLite schema and its numbered upgrade steps (the statements that write rows are
built from ``JOB_COLUMNS`` and ``actors.scheduler.ops``' field names in ``sqlite_rows``).

The schema is a list of numbered steps (``STEPS[0]`` is step 1); a database's ``PRAGMA
user_version`` is the number of steps applied to it. ``migrate`` applies the missing ones at
start-up, all in one transaction, and refuses a database newer than this code. To change the
schema, append a step; never edit one that has shipped (databases already ran it).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from typing import TypeVar

from actors.errors import StoreError
from actors.scheduler.store.sqlite_file import transaction, translate

T = TypeVar("T")

# Step 1: the schema as the first versioned corral wrote it (user_version 1). The IF NOT
# EXISTS clauses are history: kept byte for byte, as shipped.
_STEP_1 = """
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY,
    task TEXT NOT NULL,
    args BLOB NOT NULL,
    kwargs BLOB NOT NULL,
    priority INTEGER NOT NULL,
    queue TEXT NOT NULL,
    depends_on BLOB NOT NULL,
    max_retries INTEGER NOT NULL,
    idempotency_key TEXT,
    timeout REAL,
    created_at REAL NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    token INTEGER NOT NULL,
    worker TEXT,
    started_at REAL,
    finished_at REAL,
    not_before REAL NOT NULL,
    result BLOB,
    error TEXT,
    backoff_base REAL,
    backoff_factor REAL,
    backoff_cap REAL,
    workflow_id INTEGER,
    step TEXT
);
-- partial: most jobs have no key, and a UNIQUE column would index every NULL too
CREATE UNIQUE INDEX IF NOT EXISTS jobs_key ON jobs(idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_workflow ON jobs(workflow_id) WHERE workflow_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS workflows (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    idempotency_key TEXT UNIQUE,
    created_at REAL NOT NULL
);
-- parent -> child, so a re-queued parent finds the descendants it revives
CREATE TABLE IF NOT EXISTS edges (
    parent INTEGER NOT NULL,
    child INTEGER NOT NULL,
    PRIMARY KEY (parent, child)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS jobs_live ON jobs(id)
    WHERE status IN ('PENDING', 'QUEUED', 'RUNNING');
CREATE TABLE IF NOT EXISTS attempts (
    job_id INTEGER NOT NULL,
    token INTEGER NOT NULL,
    worker TEXT,
    started_at REAL,
    finished_at REAL,
    outcome TEXT NOT NULL,
    error TEXT,
    PRIMARY KEY (job_id, token)
);
"""

# Step 2: dead letters get their own partial index, so `corral requeue --all-failed` and
# listing FAILED jobs read only the failed rows instead of scanning the table. Jobs that
# never fail never enter it: a write only tests their status against the index's WHERE.
_STEP_2 = """
CREATE INDEX jobs_failed ON jobs(id) WHERE status = 'FAILED';
"""

# Step 3: the database's identity (issue 15), made once, when the step runs: job ids and
# fencing tokens mean something only within one database, so workers and clients check
# that a scheduler they move to serves the database they came from.
_STEP_3 = """
CREATE TABLE corral_meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
INSERT INTO corral_meta VALUES ('database_id', lower(hex(randomblob(16))));
"""

# Step 4: who submitted a job (issue 16): the public key of its client, so a client key
# reads, waits for and cancels only its own jobs ("": submitted without keys).
_STEP_4 = """
ALTER TABLE jobs ADD COLUMN owner TEXT NOT NULL DEFAULT '';
"""

# Step 5: concurrency keys and rate limits (issue 17). A job's key and the cap it named,
# so a restart recounts the running jobs of each key; and the rate limits, each with its
# token bucket's state (``tat``, a Unix time: strategies.gates.Bucket), so a restart or a
# failover resumes every bucket where the last commit left it.
_STEP_5 = """
ALTER TABLE jobs ADD COLUMN concurrency_key TEXT NOT NULL DEFAULT '';
ALTER TABLE jobs ADD COLUMN max_concurrent INTEGER NOT NULL DEFAULT 0;
CREATE TABLE limits (
    name TEXT PRIMARY KEY,
    count INTEGER NOT NULL,
    period REAL NOT NULL,
    burst INTEGER NOT NULL,
    tat REAL NOT NULL DEFAULT 0
);
"""

# Step 6: schedules (issue 17), one row each, written whole whenever one changes: the spec
# as msgpack (``transport.schedules.ScheduleSpec``), who added it, when it fires next, the
# last fire time that created a job and that job, the fire times skipped, paused or not.
_STEP_6 = """
CREATE TABLE schedules (
    name TEXT PRIMARY KEY,
    spec BLOB NOT NULL,
    owner TEXT NOT NULL,
    created_at REAL NOT NULL,
    next_fire REAL,
    last_fire REAL,
    last_job INTEGER,
    skipped INTEGER NOT NULL,
    paused INTEGER NOT NULL
);
"""

# Step 7: finished jobs by status and finish time (issue 17, retention): the purge reads
# the oldest ones of each status from here instead of scanning the table. Partial, so a
# job is in it only once it has finished: the moves of running jobs never touch it.
_STEP_7 = """
CREATE INDEX jobs_finished ON jobs(status, finished_at)
    WHERE status IN ('SUCCEEDED', 'CANCELLED', 'UPSTREAM_FAILED', 'FAILED');
"""

# Step 8: who a rate limit comes from (issue 17): 1 for one a task declared
# (``@task(rate_limit=...)``, told by the workers that run it), 0 for one an admin set
# (``corral limit set``), which a declaration never replaces.
_STEP_8 = """
ALTER TABLE limits ADD COLUMN declared INTEGER NOT NULL DEFAULT 0;
"""

# Step 9: the two partial indexes on a job's status get their WHERE as a chain of ORs
# (issue 19). SQLite evaluates ``status IN (a, b, c)`` (three or more constants) by building
# a temporary b-tree once per execution of a statement, so every INSERT and UPDATE of a job
# built one per such index (an UPDATE two: the old row and the new): about 2 us each, over
# half of a job's write cost on this machine (``python -m bench.write_path``). The same rows
# are indexed; the queries that read through them spell the same ORs (``sqlite._LIVE``,
# ``sqlite_purge.TERMINAL``), which is how SQLite matches a query to a partial index.
_STEP_9 = """
DROP INDEX jobs_live;
CREATE INDEX jobs_live ON jobs(id)
    WHERE status = 'PENDING' OR status = 'QUEUED' OR status = 'RUNNING';
DROP INDEX jobs_finished;
CREATE INDEX jobs_finished ON jobs(status, finished_at)
    WHERE status = 'SUCCEEDED' OR status = 'CANCELLED' OR status = 'UPSTREAM_FAILED'
    OR status = 'FAILED';
"""

# Step 10: jobs_failed goes (issue 19). Since step 9, SQLite reads the failed rows through
# jobs_finished (its OR chain names FAILED, so ``status = 'FAILED'`` or ``status = ?`` bound to
# it implies its condition, and the status column leads it): the query plans of the dead
# letters' reads name jobs_finished, never jobs_failed, which only cost every job's INSERT
# and each status change a test against its condition (``python -m bench.write_path``).
_STEP_10 = """
DROP INDEX jobs_failed;
"""

STEPS: list[str] = [
    _STEP_1,
    _STEP_2,
    _STEP_3,
    _STEP_4,
    _STEP_5,
    _STEP_6,
    _STEP_7,
    _STEP_8,
    _STEP_9,
    _STEP_10,
]

# The database's identity (step 3).
DATABASE_ID = "SELECT value FROM corral_meta WHERE key = 'database_id'"

# The version a database has once every step ran (PRAGMA user_version).
SCHEMA_VERSION = len(STEPS)

# Every step in order: the shape a new database ends up with, for tools that build a scratch
# file without versioning it (bench/idle.py). The store itself goes through ``migrate``.
SCHEMA = "".join(STEPS)

# A job's columns, in the order ``sqlite_rows.job_params`` and ``job_from_row`` use.
JOB_COLUMNS = (
    "id, task, args, kwargs, priority, queue, depends_on, max_retries, idempotency_key, "
    "timeout, created_at, status, attempts, token, worker, started_at, finished_at, "
    "not_before, result, error, backoff_base, backoff_factor, backoff_cap, workflow_id, step, "
    "owner, concurrency_key, max_concurrent"
)
# The statements that write rows are built from these names in ``sqlite_rows``.


# SQLite caps host parameters per statement (32,766 by default); stay far below it.
SQL_CHUNK = 900


def in_chunks(values: Sequence[T]) -> Iterator[tuple[list[T], str]]:
    """``values`` in pieces small enough for one ``IN (...)``, each with its placeholders."""
    for start in range(0, len(values), SQL_CHUNK):
        chunk = list(values[start : start + SQL_CHUNK])
        yield chunk, ",".join("?" * len(chunk))


def migrate(conn: sqlite3.Connection, path: str) -> int | None:
    """Bring the database on ``conn`` (the file ``path``) up to ``len(STEPS)``.

    Reads ``PRAGMA user_version``, applies the steps after it and sets the new version, all
    in one ``BEGIN IMMEDIATE`` transaction (SQLite's DDL is transactional): any failure rolls
    back and leaves the file exactly as it was. Returns the version it upgraded from, or
    None when it applied nothing (already current) or built a new, empty database.

    Raises StoreError, naming the file and both versions, for a database newer than this
    code and for one that has tables but no version (not written by a versioned corral);
    an SQLite failure during the upgrade becomes a StoreError too (StoreLocked, StoreFull,
    ... when ``translate`` knows the cause). Synchronous: the store runs it in the
    database's thread."""
    steps = list(STEPS)  # read at call time: tests append a step
    target = len(steps)
    version: int | None = None  # known once read, inside the transaction
    try:
        # The write lock first: nobody upgrades alongside.
        with transaction(conn, "BEGIN IMMEDIATE"):
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            _refuse_unknown(conn, path, version, target)
            for step in steps[version:]:
                for statement in _statements(step):
                    conn.execute(statement)
            if version != target:
                conn.execute(f"PRAGMA user_version={target}")
    except sqlite3.Error as exc:
        error = translate(exc, path, "open")
        if type(error) is StoreError and version is not None and version < target:
            error = StoreError(  # nothing more specific known: say what was being done
                path,
                f"cannot upgrade database {path} from schema {version} to {target} ({exc}); "
                f"it was left unchanged at schema {version}",
            )
        raise error from None
    assert version is not None  # read, or the transaction raised
    return version if 0 < version < target else None


def refuse_foreign(conn: sqlite3.Connection, path: str) -> None:
    """Raise StoreError, as ``migrate`` would, for a database newer than this code or one
    with tables but no version, and for a versioned one without corral's jobs table (another
    program's); reads only. The store asks before it writes anything to the file (WAL
    mode, its id), so a file it refuses is left exactly as it was found; ``migrate`` asks
    again about the version inside its own transaction."""
    try:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        _refuse_unknown(conn, path, version, len(STEPS))
        if version > 0 and not conn.execute(_JOBS_TABLE).fetchone():
            # Every corral schema has a jobs table (step 1): this is another program that
            # numbers its own schema with user_version.
            raise StoreError(
                path,
                f"database {path} is not a corral database (schema version {version}, but no "
                "jobs table): written by another program; point --db at a new file",
            )
    except sqlite3.Error as exc:
        raise translate(exc, path, "open") from None


_JOBS_TABLE = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'jobs'"


def _refuse_unknown(conn: sqlite3.Connection, path: str, version: int, target: int) -> None:
    if version > target:
        raise StoreError(
            path,
            f"database {path} was written by a newer corral: schema {version}, this corral "
            f"knows up to {target}; upgrade corral or point --db at another file",
        )
    if version == 0 and conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
        # Tables but no version: a corral from before schema versions, or another program's
        # file. Neither is safe to build on.
        raise StoreError(
            path,
            f"database {path} has tables but no corral schema version: written by an "
            "incompatible corral version or another program; point --db at a new file",
        )


def _statements(script: str) -> Iterator[str]:
    """The statements of ``script``, one at a time (``executescript`` would COMMIT first,
    ending the transaction the steps must share)."""
    statement = ""
    for line in script.splitlines(keepends=True):
        statement += line
        if sqlite3.complete_statement(statement):
            yield statement
            statement = ""
    if statement.strip():
        yield statement  # no closing semicolon: SQLite says whether it is whole
