"""Retention: the scheduler deletes finished jobs once their period has passed
(``--retention``, 7 days; FAILED ones ``--failed-retention``, 30 days; 0 keeps them).

No thread and no task of its own: one timer on the scheduler's loop tells the scheduler
``PurgeTick``; the scheduler asks the store actor for one batch (``StoreBackend.purge``,
the SQL runs in the store, in order with the commits), forgets what went (the jobs it
still held, their idempotency keys, the counts) and arms the timer again. While a backlog
remains, batches follow each other with a pause as long as the last one took, so a purge
takes at most about half of the store's time and commits keep flowing between batches.

Why the scheduler waits for each batch (its handlers run one at a time): while it does, no
other handler is half-way between reading a job from the store and writing it back, so a
job cannot be re-queued in memory while the store deletes it, and every write sent before
the batch is committed before the batch chooses its rows (a parent's new child is seen).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from actors.config import SchedulerConfig
from actors.scheduler.jobs import JobTable
from actors.scheduler.messages import PurgeTick
from actors.scheduler.store.base import Purged

log = logging.getLogger("corral.retention")

# Jobs per batch: one batch of 1,000 deletes (rows, attempts, edges) takes a few
# milliseconds on SQLite (bench/README.md, "Retention"), a pause commits can afford.
PURGE_BATCH = 1_000
# How often the scheduler looks for expired jobs: a quarter of the shortest period, at
# least twice a second (a test's --retention 2s) and at most once a minute (a week's
# retention does not need more; a day of 1M jobs is 700 jobs a minute, under one batch).
SWEEP_MIN_S = 0.5
SWEEP_MAX_S = 60.0


class Retention:
    """The scheduler's retention state: its periods, the timer, and what it deleted."""

    def __init__(self, config: SchedulerConfig, clock: Callable[[], float] = time.time) -> None:
        self.done = config.retention
        self.failed = config.failed_retention
        self.clock = clock
        periods = [p for p in (self.done, self.failed) if p > 0]
        self.every = min(SWEEP_MAX_S, max(SWEEP_MIN_S, min(periods) / 4)) if periods else 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.purged_jobs = 0
        self.purged_workflows = 0
        self.batches = 0
        self.last_batch_s = 0.0

    @property
    def enabled(self) -> bool:
        return self.every > 0

    def arm(self, tell: Callable[[Any], None], delay: float | None = None) -> None:
        """The next tick in ``delay`` seconds (default: the sweep interval)."""
        if not self.enabled:
            return
        if self.timer is not None:
            self.timer.cancel()
        wait = self.every if delay is None else delay
        self.timer = asyncio.get_running_loop().call_later(wait, tell, PurgeTick())

    def cutoffs(self) -> tuple[float, float]:
        """(done_before, failed_before) as ``StoreBackend.purge`` takes them (0: keep)."""
        now = self.clock()
        return (
            now - self.done if self.done > 0 else 0.0,
            now - self.failed if self.failed > 0 else 0.0,
        )

    def forget(self, table: JobTable, purged: Purged) -> None:
        """Drop from memory what the store deleted: the jobs, their keys (a later submit
        with the same key creates a new job), their counts."""
        for job_id, status, key in purged.jobs:
            table.jobs.pop(job_id, None)
            if key is not None and table.by_key.get(key) == job_id:
                del table.by_key[key]
            table.counts[status] -= 1
        self.purged_jobs += len(purged.jobs)
        self.purged_workflows += purged.workflows
        self.batches += 1

    def next_delay(self, purged: Purged, took: float) -> float:
        """After a full batch more are waiting: go on after a pause as long as the batch
        took (at most half the store's time); else wait for the next sweep."""
        self.last_batch_s = took
        return took if len(purged.jobs) >= PURGE_BATCH else self.every

    def metrics(self) -> dict[str, Any]:
        return {
            "purged_jobs": self.purged_jobs,
            "purged_workflows": self.purged_workflows,
            "purge_batches": self.batches,
            "purge_last_batch_ms": round(self.last_batch_s * 1000, 3),
        }
