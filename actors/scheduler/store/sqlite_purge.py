"""Retention for the SQLite store: one purge batch (``StoreBackend.purge``), run in the
database's thread as one transaction.

Finding the batch reads only the rows it deletes: the partial index ``jobs_finished``
(schema step 6) holds finished jobs by (status, finish time), so each status is one range
scan from its oldest row. A job kept as a parent (its child may run again) stays in that
range and is skipped again by every batch: cheap while such jobs are few, as they are.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import msgspec

from actors.scheduler.store import sqlite_file
from actors.scheduler.store.base import (
    MAY_RUN_AGAIN,
    PURGED_AFTER_DONE,
    PURGED_AFTER_FAILED,
    Purged,
)
from actors.scheduler.store.sqlite_schema import in_chunks

_unpack_ids = msgspec.msgpack.Decoder(list[int]).decode

# jobs_finished's WHERE (schema step 9)
TERMINAL = (
    "(status = 'SUCCEEDED' OR status = 'CANCELLED' OR status = 'UPSTREAM_FAILED' "
    "OR status = 'FAILED')"
)
_AGAIN = ", ".join(f"'{s}'" for s in MAY_RUN_AGAIN)

# The index's own WHERE term, word for word, lets SQLite use the partial index.
_CANDIDATES = f"""
SELECT id, status, idempotency_key, workflow_id, depends_on FROM jobs AS j
WHERE {TERMINAL} AND status = ? AND finished_at < ?
  AND id < (SELECT max(id) FROM jobs)
  AND NOT EXISTS (
    SELECT 1 FROM edges AS e JOIN jobs AS c ON c.id = e.child
    WHERE e.parent = j.id AND c.status IN ({_AGAIN}))
ORDER BY finished_at LIMIT ?
"""

_DELETE_WORKFLOWS = """
DELETE FROM workflows WHERE id = ? AND id < (SELECT max(id) FROM workflows)
  AND NOT EXISTS (SELECT 1 FROM jobs WHERE workflow_id = ?)
"""


def purge(conn: sqlite3.Connection, done_before: float, failed_before: float, limit: int) -> Purged:
    """One batch (see ``StoreBackend.purge``); synchronous, in the database thread."""
    with sqlite_file.transaction(conn, "BEGIN IMMEDIATE"):
        rows: list[tuple[Any, ...]] = []
        for statuses, before in (
            (PURGED_AFTER_DONE, done_before),
            (PURGED_AFTER_FAILED, failed_before),
        ):
            for status in statuses:
                if before <= 0 or len(rows) >= limit:
                    continue
                rows += conn.execute(_CANDIDATES, (status, before, limit - len(rows))).fetchall()
        if not rows:
            return Purged([])
        ids = [row[0] for row in rows]
        for chunk, marks in in_chunks(ids):
            conn.execute(f"DELETE FROM jobs WHERE id IN ({marks})", chunk)
            conn.execute(f"DELETE FROM attempts WHERE job_id IN ({marks})", chunk)
            conn.execute(f"DELETE FROM edges WHERE parent IN ({marks})", chunk)
        # Edges into a deleted job, by primary key (parent, child): its parents are in the
        # row, so no index on edges.child is needed (nor paid for by every insert).
        incoming = [(p, row[0]) for row in rows if row[4] != b"\x90" for p in _unpack_ids(row[4])]
        if incoming:
            conn.executemany("DELETE FROM edges WHERE parent = ? AND child = ?", incoming)
        flows = {row[3] for row in rows if row[3] is not None}
        gone = 0
        for flow in flows:
            gone += conn.execute(_DELETE_WORKFLOWS, (flow, flow)).rowcount
        return Purged([(row[0], row[1], row[2]) for row in rows], gone)
