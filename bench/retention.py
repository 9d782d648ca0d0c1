"""``python -m bench --retention``: a database that ran ``--per-day`` jobs a day (1M) for
``--days`` days (7), and what retention does to it.

The rows are written backdated through the store's own API (``SqliteStore.commit`` in
batches of 20,000: the same row mapping a scheduler writes), finished evenly over the
days: 98.5% SUCCEEDED, 1% FAILED (with an attempt row each), 0.5% CANCELLED. Then, on
real processes:

1. before: a scheduler with retention off, under a steady load (``--rate`` jobs/s, 200,
   submitted 10 per frame): the submit->acknowledgement latency (an acknowledgement
   follows the commit) and the store's commit latency;
2. during: a scheduler with ``--retention --keep`` (1d) under the same load while it
   purges everything older, until the jobs counted by the status stop falling: the same
   latencies, and how long the purge took;
3. after: the same load once more; the file's size and its free pages (SQLite reuses the
   pages the purge freed, so the file stops growing; it does not shrink).
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec

from actors import AsyncClient, job_spec
from actors.lifecycle import JobState
from actors.scheduler.job import Job
from actors.scheduler.ops import Ops
from actors.scheduler.store.sqlite import SqliteStore
from bench.harness import Cluster
from bench.report import percentiles

DAY = 86_400.0
FILL_BATCH = 20_000
FRAME = 10  # jobs per submit frame under the steady load


def _job(job_id: int, finished: float, args: bytes, result: msgspec.Raw) -> Job:
    status = JobState.SUCCEEDED
    if job_id % 100 == 0:
        status = JobState.FAILED
    elif job_id % 200 == 1:
        status = JobState.CANCELLED
    return Job(
        job_id, "bench.noop", args, args, 0, "default", (), 3,
        finished - 0.2, status, attempts=1, token=1, worker="w0", started_at=finished - 0.1,
        finished_at=finished, result=result if status is JobState.SUCCEEDED else None,
        error=None if status is JobState.SUCCEEDED else "boom",
    )  # fmt: skip


async def fill(path: str, per_day: int, days: float, now: float) -> float:
    """Write ``per_day * days`` finished jobs, oldest first, ending now; returns seconds."""
    started = time.perf_counter()
    store = SqliteStore(path, "normal")
    await store.open()
    total = int(per_day * days)
    args, result = msgspec.msgpack.encode([]), msgspec.Raw(b"\xc0")
    try:
        for first in range(1, total + 1, FILL_BATCH):
            ids = range(first, min(total, first + FILL_BATCH - 1) + 1)
            jobs = [_job(i, now - days * DAY * (1 - i / total), args, result) for i in ids]
            attempts = [
                (j.id, 1, "w0", j.started_at, j.finished_at, "failed", "boom")
                for j in jobs
                if j.status is JobState.FAILED
            ]
            await store.commit(Ops(inserts=jobs, attempts=attempts))
            await store.after_commit(len(jobs))
        await store.checkpoint()
    finally:
        await store.close()
    return time.perf_counter() - started


def file_figures(path: str) -> dict[str, Any]:
    """Size of the database and its WAL (MB), and its free pages, read while it runs."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        free, pages = (
            conn.execute(f"PRAGMA {p}").fetchone()[0] for p in ("freelist_count", "page_count")
        )
    finally:
        conn.close()
    wal = os.path.getsize(path + "-wal") if os.path.exists(path + "-wal") else 0
    return {
        "file_mb": round(os.path.getsize(path) / 1e6, 1),
        "wal_mb": round(wal / 1e6, 1),
        "free_pages_pct": round(100 * free / max(1, pages), 1),
    }  # fmt: skip


async def steady(client: AsyncClient, rate: float, until: Any) -> dict[str, Any]:
    """Submit FRAME jobs at a time at ``rate`` jobs/s until ``until()`` is true; the
    submit->acknowledgement latency of each frame (ms)."""
    samples: list[float] = []
    spec = job_spec("bench.noop")
    every = FRAME / rate
    next_at = time.perf_counter()
    while not await until():
        sent = time.perf_counter()
        await client.submit_many([spec] * FRAME)
        samples.append((time.perf_counter() - sent) * 1000)
        next_at += every
        await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
    return {"frames": len(samples), "ack_ms": percentiles(samples)}


async def phase(cluster: Cluster, rate: float, seconds: float, purge: bool) -> dict[str, Any]:
    """One scheduler run under the steady load: ``seconds`` long, or (``purge``) until
    the jobs counted have made no new low for three seconds (the load adds some)."""
    async with AsyncClient(cluster.address, **cluster.client_options()) as client:
        started = time.perf_counter()
        last = {"count": float("inf"), "at": started}

        async def done() -> bool:
            now = time.perf_counter()
            if not purge:
                return now - started >= seconds
            total = sum((await client.status()).jobs.values())
            if total < last["count"]:
                last.update(count=total, at=now)
            return now - last["at"] >= 3.0

        figures = await steady(client, rate, done)
        took = (last["at"] if purge else time.perf_counter()) - started
        return {**figures, "seconds": round(took, 1)}


def run_retention(
    per_day: int, days: float, keep: str, rate: float, seconds: float
) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="corral-retention-"))
    db = str(folder / "corral.db")
    fill_s = asyncio.run(fill(db, per_day, days, time.time()))
    result: dict[str, Any] = {
        "mode": "retention", "jobs_written": int(per_day * days), "fill_s": round(fill_s, 1),
        "file_before": file_figures(db),
    }  # fmt: skip
    for name, flags, purge in (
        ("before", ("--retention", "off", "--failed-retention", "off"), False),
        ("during_purge", ("--retention", keep, "--failed-retention", keep), True),
        ("after", ("--retention", keep, "--failed-retention", keep), False),
    ):
        cluster = Cluster(("--durability", "full", *flags), directory=folder, db=db)
        try:
            cluster.start_scheduler()
            cluster.start_workers(1, 64)
            result[name] = asyncio.run(phase(cluster, rate, seconds, purge))
            time.sleep(1.1)  # the scheduler publishes its metrics once a second
            commit = cluster.scheduler_histograms().get("corral_store_commit_seconds")
            result[name]["store_commit_ms"] = commit
            result[f"file_{name}"] = file_figures(db)
        finally:
            cluster.stop()
    result["purge_s"] = result["during_purge"]["seconds"]
    result["lost"] = result["duplicated"] = 0  # not this mode's question
    return result
