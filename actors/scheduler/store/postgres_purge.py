"""Retention for the PostgreSQL store: one purge batch (``StoreBackend.purge``) in one
transaction, fenced by the leader's term as every commit is (a deposed leader deletes
nothing). The candidates come from the partial index ``jobs_finished`` (schema step 6),
one range per status, locked ``FOR UPDATE`` so the rows deleted are the rows read.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from actors.scheduler.store.base import (
    MAY_RUN_AGAIN,
    PURGED_AFTER_DONE,
    PURGED_AFTER_FAILED,
    Purged,
)
from actors.scheduler.store.postgres_rows import text_out

_TERMINAL = "('SUCCEEDED', 'CANCELLED', 'UPSTREAM_FAILED', 'FAILED')"  # jobs_finished's WHERE

_CANDIDATES = f"""
SELECT id, status, idempotency_key, workflow_id FROM jobs AS j
WHERE status IN {_TERMINAL} AND status = $1 AND finished_at < $2
  AND id < (SELECT max(id) FROM jobs)
  AND NOT EXISTS (
    SELECT 1 FROM edges AS e JOIN jobs AS c ON c.id = e.child
    WHERE e.parent = j.id AND c.status = ANY($4::text[]))
ORDER BY finished_at LIMIT $3
FOR UPDATE
"""

_DELETE = """
WITH gone AS (SELECT unnest($1::bigint[]) AS id),
  a AS (DELETE FROM attempts WHERE job_id IN (SELECT id FROM gone)),
  e AS (DELETE FROM edges WHERE parent IN (SELECT id FROM gone)
        OR child IN (SELECT id FROM gone))
DELETE FROM jobs WHERE id IN (SELECT id FROM gone)
"""

_DELETE_WORKFLOWS = """
DELETE FROM workflows AS w WHERE w.id = ANY($1::bigint[])
  AND w.id < (SELECT max(id) FROM workflows)
  AND NOT EXISTS (SELECT 1 FROM jobs WHERE workflow_id = w.id)
"""


async def purge(
    conn: asyncpg.Connection,
    done_before: float,
    failed_before: float,
    limit: int,
    first: Callable[[asyncpg.Connection], Awaitable[None]] | None = None,
) -> Purged:
    """One batch (see ``StoreBackend.purge``); ``first`` is the leader's fencing check."""
    async with conn.transaction():
        if first is not None:
            await first(conn)
        rows: list[Any] = []
        for statuses, before in (
            (PURGED_AFTER_DONE, done_before),
            (PURGED_AFTER_FAILED, failed_before),
        ):
            for status in statuses:
                if before <= 0 or len(rows) >= limit:
                    continue
                rows += await conn.fetch(
                    _CANDIDATES, status, before, limit - len(rows), list(MAY_RUN_AGAIN)
                )
        if not rows:
            return Purged([])
        await conn.execute(_DELETE, [row[0] for row in rows])
        flows = list({row[3] for row in rows if row[3] is not None})
        gone = 0
        if flows:
            gone = int((await conn.execute(_DELETE_WORKFLOWS, flows)).split()[-1])
        return Purged([(row[0], row[1], text_out(row[2])) for row in rows], gone)
