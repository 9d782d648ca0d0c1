"""``python -m bench.idle``: what an idle gap costs the next piece of work on this machine.

At 200 jobs/s the scheduler sleeps about 5 ms between jobs, and every job's work then runs
on a CPU that was idle. This runs the store's own transaction for one new leased job (the
INSERT, the lease's UPDATE and the COMMIT of the SQLite store's batch write, on a WAL file
opened like the store opens it) back to back, and again after each of a few sleep lengths,
and prints the CPU time of the thread per transaction (p50 / p99, µs). A second column does
the same after spinning the CPU for the last 0.5 ms of the gap: if that brought the time
back, idle clock or power states would be the cause; when it does not, the work's code and
data were evicted from the caches while it slept.

``python -m bench.idle [SAMPLES]``: transactions per gap and column (default 300).
"""

from __future__ import annotations

import sqlite3
import sys
import tempfile
import time
from pathlib import Path

from actors.lifecycle import QUEUED, RUNNING
from actors.scheduler.job import NO_ARGS, NO_KWARGS
from actors.scheduler.jobs import Job
from actors.scheduler.ops import Ops
from actors.scheduler.store.sqlite_rows import connection_pragmas, write_batch
from actors.scheduler.store.sqlite_schema import SCHEMA

GAPS_MS = (0.0, 0.2, 1.0, 5.0, 20.0)
SAMPLES = 300


def open_like_the_store(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    # "normal" (no fsync) on purpose: this times the CPU work of a commit after an idle
    # gap; with "full" (the default) the fsync's wait would swamp it.
    for pragma in connection_pragmas("normal"):
        conn.execute(pragma)
    conn.executescript(SCHEMA)
    return conn


def job_ops(job_id: int) -> Ops:
    """A no-op job's insert (QUEUED) and its lease's update, as the scheduler writes them."""
    job = Job(
        job_id,
        "bench.noop",
        NO_ARGS,
        NO_KWARGS,
        0,
        "default",
        (),
        3,
        time.time(),
        QUEUED,
    )
    ops = Ops(new_jobs=[job]).seal()
    job.status, job.attempts, job.token = RUNNING, 1, 1
    job.worker, job.started_at = "bench-0", time.time()
    ops.updates.append(job.update_row(QUEUED))
    return ops


def spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def measure(
    conn: sqlite3.Connection, gap_s: float, spin_s: float, first_id: int, samples: int
) -> list[float]:
    """CPU µs of one transaction, each after ``gap_s`` of sleep (the last ``spin_s`` spun)."""
    costs = []
    for job_id in range(first_id, first_id + samples):
        if gap_s:
            time.sleep(max(0.0, gap_s - spin_s))
            spin(min(spin_s, gap_s))
        started = time.thread_time_ns()
        ops = job_ops(job_id)
        write_batch(conn, ops)
        costs.append((time.thread_time_ns() - started) / 1000)
    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
    return sorted(costs)


def at(samples: list[float], q: float) -> float:
    return samples[min(len(samples) - 1, int(q * len(samples)))]


def main(argv: list[str]) -> None:
    samples = int(argv[0]) if argv else SAMPLES
    with tempfile.TemporaryDirectory(prefix="corral-idle-") as tmp:
        conn = open_like_the_store(Path(tmp) / "idle.db")
        next_id = 1
        print("gap before each transaction | CPU µs p50 / p99 | ... spinning its last 0.5 ms")
        for gap_ms in GAPS_MS:
            slept = measure(conn, gap_ms / 1000, 0.0, next_id, samples)
            spun = measure(conn, gap_ms / 1000, 0.0005, next_id + samples, samples)
            next_id += 2 * samples
            print(
                f"{gap_ms:>8g} ms{'':17}| {at(slept, 0.5):6.0f} / {at(slept, 0.99):6.0f}"
                f"     | {at(spun, 0.5):6.0f} / {at(spun, 0.99):6.0f}"
            )
        conn.close()


if __name__ == "__main__":
    main(sys.argv[1:])
