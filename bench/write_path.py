"""The SQLite write path alone (issue 19): the CPU time ``sqlite_rows.write_batch`` spends
per job on a real file, with no actors, no sockets and no event loop.

``python -m bench.write_path [ROUNDS] [BATCH]`` builds the throughput mode's jobs through a
real ``JobTable`` (no-op task, default queue, no key, no parents, created ready), and
commits them as the scheduler does: the new jobs (inserted QUEUED), their leases, their
successes, each a batch of BATCH jobs. ``split`` commits the three apart; ``merged`` commits
the inserts and the leases in one batch (both writers merged, as the store actor merges
writes that pile up), then the successes. Only the thread's CPU inside ``write_batch`` is
counted (``time.thread_time``), so the figure is the database thread's cost per job.
"""

from __future__ import annotations

import os
import sqlite3
import statistics
import sys
import tempfile
import time

from actors import job_spec
from actors.config import SchedulerConfig
from actors.lifecycle import QUEUED
from actors.scheduler.jobs import JobTable
from actors.scheduler.ops import Ops
from actors.scheduler.store.sqlite_rows import connection_pragmas, write_batch
from actors.scheduler.store.sqlite_schema import migrate
from transport import protocol as wire


def _round(conn: sqlite3.Connection, table: JobTable, batch: int, merged: bool) -> float:
    """One batch of jobs through insert, lease and success: CPU seconds in write_batch."""
    spec = job_spec("bench.noop")
    created = Ops()
    jobs = []
    for _ in range(batch):
        job = table.create(spec, created)
        table.move(job, QUEUED, created)
        jobs.append(job)
    created.seal()
    leased = Ops()
    for job in jobs:
        table.lease(job.id, b"peer", "worker-1", leased)
    done = Ops()
    for job in jobs:
        table.succeed(job, wire.NONE_RAW, done)
    if merged:
        created.extend(leased)
        writes = [created, done]
    else:
        writes = [created, leased, done]
    cpu = 0.0
    for ops in writes:
        started = time.thread_time()
        write_batch(conn, ops)
        cpu += time.thread_time() - started
    for job in jobs:
        table.settle(job)
    return cpu


def main(rounds: int = 30, batch: int = 2000) -> None:
    directory = tempfile.mkdtemp(prefix="corral-write-path-")
    results: dict[str, list[float]] = {"split": [], "merged": []}
    for name in results:
        path = os.path.join(directory, f"{name}.db")
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        for pragma in connection_pragmas("normal"):
            conn.execute(pragma)
        migrate(conn, path)
        table = JobTable(SchedulerConfig())
        _round(conn, table, batch, name == "merged")  # warm up: caches, statements, pages
        results[name] = [_round(conn, table, batch, name == "merged") for _ in range(rounds)]
        conn.close()
    for name, cpus in results.items():
        per_job = sorted(cpu / batch * 1e6 for cpu in cpus)
        print(
            f"{name:7} us/job: median {statistics.median(per_job):6.1f}  "
            f"min {per_job[0]:6.1f}  max {per_job[-1]:6.1f}  ({rounds} rounds of {batch})"
        )


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
