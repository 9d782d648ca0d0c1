"""Databases as corral wrote them at schema 1, the release before numbered migrations, for
the upgrade tests.

The DDL comes from ``tests/fixtures/schema_v1.sql`` and the INSERT statements are copied
here as that release ran them, so these files stay what an old corral left on disk however
the code's own schema steps change. ``every_state`` fills one with a job in every state.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import msgspec

V1_DDL = (Path(__file__).resolve().parents[1] / "fixtures" / "schema_v1.sql").read_text()

V1_JOB_COLUMNS = (
    "id, task, args, kwargs, priority, queue, depends_on, max_retries, idempotency_key, "
    "timeout, created_at, status, attempts, token, worker, started_at, finished_at, "
    "not_before, result, error, backoff_base, backoff_factor, backoff_cap, workflow_id, step"
)
V1_INSERT_JOB = f"INSERT INTO jobs ({V1_JOB_COLUMNS}) VALUES ({', '.join('?' * 25)})"
V1_INSERT_WORKFLOW = (
    "INSERT INTO workflows (id, name, idempotency_key, created_at) VALUES (?, ?, ?, ?)"
)
V1_INSERT_EDGE = "INSERT OR IGNORE INTO edges (parent, child) VALUES (?, ?)"
V1_INSERT_ATTEMPT = (
    "INSERT OR REPLACE INTO attempts (job_id, token, worker, started_at, finished_at, outcome, "
    "error) VALUES (?, ?, ?, ?, ?, ?, ?)"
)
APPLICATION_ID = 0x0C0AA1  # any non-zero id: the release before this one gave each file one

pack = msgspec.msgpack.encode


def job_row(
    job_id: int, task: str, status: str, value: Any = None, **fields: Any
) -> tuple[Any, ...]:
    """A jobs row as schema 1 stored it (``Job.insert_row`` of that release): args and kwargs
    msgpack, ``depends_on`` a msgpack list of ids, ``status`` the state's name."""
    row: dict[str, Any] = {
        "id": job_id,
        "task": task,
        "args": pack([value]),
        "kwargs": pack({}),
        "priority": 0,
        "queue": "default",
        "depends_on": pack(fields.pop("depends_on", [])),
        "max_retries": 3,
        "idempotency_key": None,
        "timeout": None,
        "created_at": time.time() - 60,
        "status": status,
        "attempts": 0,
        "token": 0,
        "worker": None,
        "started_at": None,
        "finished_at": None,
        "not_before": 0.0,
        "result": None,
        "error": None,
        "backoff_base": None,
        "backoff_factor": None,
        "backoff_cap": None,
        "workflow_id": None,
        "step": None,
    }
    unknown = fields.keys() - row.keys()
    assert not unknown, f"not a schema 1 column: {unknown}"
    row.update(fields)
    return tuple(row[c.strip()] for c in V1_JOB_COLUMNS.split(","))


def create(path: Path) -> sqlite3.Connection:
    """An empty schema 1 database at ``path``, in WAL mode like the store's, user_version 1.
    The caller fills it and closes the connection."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.executescript(V1_DDL)
    conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
    conn.execute("PRAGMA user_version=1")
    return conn


# The ids every_state gives each job, by what the job is.
SUCCEEDED_ID = 1
FAILED_ID = 2  # dead-lettered, with an attempts row
EXTRACT_ID = 3  # QUEUED, workflow step "extract"
LOAD_ID = 4  # PENDING on EXTRACT_ID, workflow step "load"
RETRYING_ID = 5  # PENDING in retry backoff after a failed attempt
RUNNING_ID = 6  # RUNNING on a worker that is gone
CANCELLED_ID = 7
DOOMED_ID = 8  # UPSTREAM_FAILED: its parent FAILED_ID failed
WORKFLOW_ID = 1
STATES = {
    SUCCEEDED_ID: "SUCCEEDED",
    FAILED_ID: "FAILED",
    EXTRACT_ID: "QUEUED",
    LOAD_ID: "PENDING",
    RETRYING_ID: "PENDING",
    RUNNING_ID: "RUNNING",
    CANCELLED_ID: "CANCELLED",
    DOOMED_ID: "UPSTREAM_FAILED",
}


def every_state(path: Path, task: str = "record", retry_in: float = 0.5) -> None:
    """A schema 1 database holding a job in every state (ids above), a workflow with its
    edges, and the attempts rows of the failed attempts. ``task`` is every job's task; the
    retrying job's backoff ends ``retry_in`` seconds from now."""
    now = time.time()
    failed, timed_out = "ConnectionError: the warehouse was down", "TimeoutError: slow upstream"
    conn = create(path)
    conn.execute("BEGIN")
    conn.execute(V1_INSERT_WORKFLOW, (WORKFLOW_ID, "etl", "etl-1", now - 30))
    conn.executemany(
        V1_INSERT_JOB,
        [
            job_row(
                SUCCEEDED_ID,
                task,
                "SUCCEEDED",
                "done",
                attempts=1,
                token=1,
                worker="old-worker",
                started_at=now - 50,
                finished_at=now - 49,
                result=pack("done"),
            ),
            job_row(
                FAILED_ID,
                task,
                "FAILED",
                "dead letter",
                max_retries=0,
                attempts=1,
                token=1,
                worker="old-worker",
                started_at=now - 45,
                finished_at=now - 44,
                error=failed,
            ),
            job_row(
                EXTRACT_ID,
                task,
                "QUEUED",
                "extract",
                workflow_id=WORKFLOW_ID,
                step="extract",
                created_at=now - 30,
            ),
            job_row(
                LOAD_ID,
                task,
                "PENDING",
                "load",
                depends_on=[EXTRACT_ID],
                workflow_id=WORKFLOW_ID,
                step="load",
                created_at=now - 30,
            ),
            job_row(
                RETRYING_ID,
                task,
                "PENDING",
                "retried",
                attempts=1,
                token=1,
                worker="old-worker",
                started_at=now - 3,
                finished_at=now - 2,
                not_before=now + retry_in,
                error=timed_out,
                backoff_base=0.5,
                backoff_factor=2.0,
                backoff_cap=10.0,
            ),
            job_row(
                RUNNING_ID,
                task,
                "RUNNING",
                "was running",
                attempts=1,
                token=1,
                worker="gone-worker",
                started_at=now - 1,
            ),
            job_row(
                CANCELLED_ID,
                task,
                "CANCELLED",
                "cancelled",
                finished_at=now - 20,
                error="cancelled",
            ),
            job_row(
                DOOMED_ID,
                task,
                "UPSTREAM_FAILED",
                "doomed",
                depends_on=[FAILED_ID],
                finished_at=now - 44,
                error=f"parent {FAILED_ID} ended FAILED",
            ),
        ],
    )
    conn.executemany(V1_INSERT_EDGE, [(EXTRACT_ID, LOAD_ID), (FAILED_ID, DOOMED_ID)])
    conn.executemany(
        V1_INSERT_ATTEMPT,
        [
            (FAILED_ID, 1, "old-worker", now - 45, now - 44, "error", failed),
            (RETRYING_ID, 1, "old-worker", now - 3, now - 2, "error", timed_out),
        ],
    )
    conn.execute("COMMIT")
    conn.close()
