"""The SQLite schema and the statements the store runs, in one place.

``actors.scheduler.store.actor`` re-exports what other modules import from it (``JOB_COLUMNS``,
``in_chunks``), so the schema can change shape here without touching them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TypeVar

T = TypeVar("T")

SCHEMA = """
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

JOB_COLUMNS = (
    "id, task, args, kwargs, priority, queue, depends_on, max_retries, idempotency_key, "
    "timeout, created_at, status, attempts, token, worker, started_at, finished_at, "
    "not_before, result, error, backoff_base, backoff_factor, backoff_cap, workflow_id, step"
)
INSERT_JOB = f"INSERT INTO jobs ({JOB_COLUMNS}) VALUES ({', '.join('?' * 25)})"
INSERT_WORKFLOW = (
    "INSERT INTO workflows (id, name, idempotency_key, created_at) VALUES (?, ?, ?, ?)"
)
INSERT_EDGE = "INSERT OR IGNORE INTO edges (parent, child) VALUES (?, ?)"
UPDATE_JOB = (
    "UPDATE jobs SET status=?, attempts=?, token=?, worker=?, started_at=?, finished_at=?, "
    "not_before=?, result=?, error=? WHERE id=? AND status=?"
)
INSERT_ATTEMPT = (
    "INSERT OR REPLACE INTO attempts (job_id, token, worker, started_at, finished_at, outcome, "
    "error) VALUES (?, ?, ?, ?, ?, ?, ?)"
)


# SQLite caps host parameters per statement (32,766 by default); stay far below it.
SQL_CHUNK = 900


def in_chunks(values: Sequence[T]) -> Iterator[tuple[list[T], str]]:
    """``values`` in pieces small enough for one ``IN (...)``, each with its placeholders."""
    for start in range(0, len(values), SQL_CHUNK):
        chunk = list(values[start : start + SQL_CHUNK])
        yield chunk, ",".join("?" * len(chunk))


# Bumped when the tables change shape; a file with another version is refused at start-up
# with a clear message (there are no migrations yet).
SCHEMA_VERSION = 1
