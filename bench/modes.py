"""The load-generating modes: throughput, steady rate, backlog drain. Each drives a started
``Cluster`` through the client SDK and returns the figures of one run."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from rich.progress import Progress

from actors import AsyncClient, job_spec
from bench.harness import Cluster
from bench.report import percentiles

SUBMIT_CHUNK = 5_000  # jobs per Submit frame
IN_FLIGHT = 4  # submit frames awaiting acknowledgement at once


def cpu_times() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [float(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def busy_percent(before: tuple[float, float], after: tuple[float, float]) -> float:
    return round(100 * (after[0] - before[0]) / max(1.0, after[1] - before[1]), 1)


def cpu_figures(
    jobs: int,
    machine: tuple[tuple[float, float], tuple[float, float]],
    roles: tuple[dict[str, float], dict[str, float]],
) -> dict[str, Any]:
    """The machine's busy CPU time per job (ms; every process on it, from /proc/stat), and
    each role's CPU per job and share of that busy time (scheduler, workers, load generator;
    ``other``: whatever else ran on the machine meanwhile)."""
    busy_s = (machine[1][0] - machine[0][0]) / os.sysconf("SC_CLK_TCK")
    used = {role: roles[1][role] - roles[0][role] for role in roles[0]}
    shares = {role: round(s / busy_s, 3) if busy_s else None for role, s in used.items()}
    shares["other"] = round(1 - sum(used.values()) / busy_s, 3) if busy_s else None
    return {
        "machine_cpu_ms_per_job": round(busy_s * 1000 / max(1, jobs), 4),
        "cpu_ms_per_job": {role: round(s * 1000 / max(1, jobs), 4) for role, s in used.items()},
        "cpu_share": shares,
    }


async def wait_for_workers(client: AsyncClient, n: int) -> None:
    while len([w for w in (await client.status()).workers if w.state == "alive"]) < n:  # noqa: ASYNC110
        await asyncio.sleep(0.05)


async def submit_all(
    client: AsyncClient, jobs: int, on_chunk: Any = None, job_ms: float = 0.0
) -> list[int]:
    """Submit ``jobs`` no-op jobs (each awaiting ``job_ms`` ms, if given) as fast as
    acknowledgements come back (a few frames in flight); returns their ids in order."""
    spec = job_spec("bench.nap", [job_ms]) if job_ms else job_spec("bench.noop")
    gate = asyncio.Semaphore(IN_FLIGHT)

    async def chunk(n: int) -> list[int]:
        async with gate:
            ids = await client.submit_many([spec] * n)
        if on_chunk is not None:
            on_chunk(ids)
        return ids

    sizes = [min(SUBMIT_CHUNK, jobs - start) for start in range(0, jobs, SUBMIT_CHUNK)]
    return [i for ids in await asyncio.gather(*(chunk(n) for n in sizes)) for i in ids]


async def wait_all(
    client: AsyncClient, ids: list[int], progress: Progress, bar: Any, timeout: float
) -> int:
    done = 0
    waits = [
        asyncio.ensure_future(client.wait(ids[i : i + 50_000], timeout=timeout))
        for i in range(0, len(ids), 50_000)
    ]
    for finished in asyncio.as_completed(waits):
        done += len(await finished)
        progress.update(bar, completed=done)
    return done


async def throughput(
    cluster: Cluster,
    jobs: int,
    workers: int,
    concurrency: int,
    progress: Progress,
    status_every: float = 0.0,
    timeout: float = 600,
    job_ms: float = 0.0,
) -> dict[str, Any]:
    cluster.start_workers(workers, concurrency)
    bar = progress.add_task(f"{jobs:,} jobs on {workers} worker(s)", total=jobs)
    polls = 0
    async with AsyncClient(
        cluster.address, connect_timeout=20, request_timeout=timeout, **cluster.client_options()
    ) as client:
        await wait_for_workers(client, workers)
        poller = None
        if status_every:

            async def poll() -> None:
                nonlocal polls
                while True:
                    await client.status()
                    polls += 1
                    await asyncio.sleep(status_every)

            poller = asyncio.ensure_future(poll())
        roles_before = cluster.cpu_by_role()
        started, cpu_before = time.perf_counter(), cpu_times()
        ids = await submit_all(client, jobs, job_ms=job_ms)
        completed = await wait_all(client, ids, progress, bar, timeout)
        seconds, cpu_after = time.perf_counter() - started, cpu_times()
        roles_after = cluster.cpu_by_role()
        cpu = busy_percent(cpu_before, cpu_after)
        if poller is not None:
            poller.cancel()
    result = {
        "mode": "throughput",
        "jobs": jobs,
        "completed": completed,
        "seconds": seconds,
        "jobs_per_s": jobs / seconds,
        "latency_ms": percentiles([]),
        "scheduler_rss_mb": cluster.rss_mb(),
        "workers": workers,
        "job_ms": job_ms,
        "machine_cpu_busy_pct": cpu,
        **cpu_figures(jobs, (cpu_before, cpu_after), (roles_before, roles_after)),
        "ids": ids,
    }
    if status_every:
        result["status_requests"] = polls
    return result


async def steady_rate(
    cluster: Cluster,
    rate: float,
    duration: float,
    workers: int,
    concurrency: int,
    progress: Progress,
    samples: bool = False,
) -> dict[str, Any]:
    """Submit one job at a time at ``rate`` per second, each as one submit-and-wait request
    (what ``AsyncClient.run`` sends); measure submit->start and submit->done for each (start
    by the worker's clock, same machine). ``samples``: every job's submit->start too, as
    ``samples_ms``."""
    cluster.start_workers(workers, concurrency)
    total = int(rate * duration)
    bar = progress.add_task(f"{rate:g} jobs/s for {duration:g}s", total=total)
    submitted_at: dict[int, float] = {}
    noop = job_spec("bench.noop")
    done_at: dict[int, float] = {}
    async with AsyncClient(
        cluster.address, connect_timeout=20, **cluster.client_options()
    ) as client:
        await wait_for_workers(client, workers)

        async def one() -> None:
            sent = time.time()
            [outcome] = await client.submit_and_wait([noop], timeout=120)
            submitted_at[outcome.job_id] = sent
            done_at[outcome.job_id] = time.time()
            progress.advance(bar)

        tasks = []
        cpu_before = cluster.cpu_seconds()
        began = time.perf_counter()
        for n in range(total):
            delay = began + n / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.ensure_future(one()))
        await asyncio.gather(*tasks)
        seconds = time.perf_counter() - began
        cpu = cluster.cpu_seconds() - cpu_before
    cluster.stop_workers()
    starts = cluster.start_times()
    to_start = [(starts[j] - t) * 1000 for j, t in submitted_at.items() if j in starts]
    to_done = [(done_at[j] - t) * 1000 for j, t in submitted_at.items()]
    return {
        "mode": "rate",
        "jobs": total,
        "completed": len(done_at),
        "seconds": seconds,
        "jobs_per_s": len(done_at) / seconds,
        "rate": rate,
        "latency_ms": percentiles(to_start),
        "submit_to_done_ms": percentiles(to_done),
        "scheduler_cpu_ms_per_job": round(cpu * 1000 / max(1, len(done_at)), 3),
        "scheduler_rss_mb": cluster.rss_mb(),
        "ids": list(submitted_at),
        **({"samples_ms": to_start} if samples else {}),
    }


async def backlog(
    cluster: Cluster,
    jobs: int,
    workers: int,
    concurrency: int,
    progress: Progress,
    timeout: float = 1200,
) -> dict[str, Any]:
    """Enqueue ``jobs`` with no worker connected, then start workers and time the drain."""
    bar = progress.add_task(f"enqueue {jobs:,} with no workers", total=jobs)
    async with AsyncClient(
        cluster.address, connect_timeout=20, request_timeout=timeout, **cluster.client_options()
    ) as client:
        started = time.perf_counter()
        ids = await submit_all(client, jobs, lambda chunk: progress.advance(bar, len(chunk)))
        enqueue_seconds = time.perf_counter() - started
        await asyncio.sleep(1.0)
        rss_with_backlog = cluster.rss_mb()
        drain = progress.add_task(f"drain on {workers} worker(s)", total=jobs)
        started = time.perf_counter()
        cluster.start_workers(workers, concurrency)
        completed = await wait_all(client, ids, progress, drain, timeout)
        seconds = time.perf_counter() - started
    return {
        "mode": "backlog",
        "jobs": jobs,
        "completed": completed,
        "seconds": seconds,
        "jobs_per_s": jobs / seconds,
        "latency_ms": percentiles([]),
        "scheduler_rss_mb": rss_with_backlog,
        "enqueue_s": enqueue_seconds,
        "enqueue_per_s": jobs / enqueue_seconds,
        "ids": ids,
    }


async def fuzz(
    cluster: Cluster, frames: int, seed: int, peers: int, progress: Progress
) -> dict[str, Any]:
    """Hostile frames from ``peers`` raw sockets (``bench.fuzz``) while one worker runs an
    honest client's no-op jobs (one per 50 frames) on the valid queue; what the scheduler
    answered, its memory, and whether the store holds anything but the honest jobs."""
    from bench.frames import VALID_QUEUE
    from bench.fuzz import bad_frames_settled, fuzz_peers, honest_work, store_changes, vm_kb

    jobs = max(10, frames // 50)
    cluster.start_workers(1, 16, queues=VALID_QUEUE)
    assert cluster.scheduler is not None
    pid = cluster.scheduler.pid
    bar = progress.add_task(f"{frames:,} hostile frames from {peers} peers", total=frames)
    async with AsyncClient(
        cluster.address, connect_timeout=20, request_timeout=120, **cluster.client_options()
    ) as client:
        await wait_for_workers(client, 1)
        rss_before = vm_kb(pid, "VmRSS")
        started = time.perf_counter()
        fuzzing = asyncio.ensure_future(
            fuzz_peers(
                cluster.address,
                frames,
                seed,
                peers,
                jobs,
                on_frames=lambda n: progress.advance(bar, n),
            )
        )
        ids = await honest_work(client, "bench.noop", jobs, fuzzing, numbered=False)
        tally = await fuzzing
        seconds = time.perf_counter() - started
        changes = await store_changes(client, ids, "bench.noop", numbered=False)
        counted = await bad_frames_settled(cluster.metrics_port, tally.expected_bad)
    alive = cluster.scheduler.poll() is None
    return {
        "mode": "fuzz",
        "jobs": jobs,
        "completed": len(ids),
        "seconds": seconds,
        "jobs_per_s": jobs / seconds,
        "latency_ms": percentiles([]),
        "frames": tally.frames,
        "frames_per_s": tally.frames / seconds,
        "peers": peers,
        "seed": seed,
        "sent_by_kind": dict(tally.sent.most_common()),
        "replies": dict(tally.replies.most_common()),
        "unreadable_replies": tally.unreadable,
        "crashes": int(not alive),
        "stalls": tally.stalls,
        "bad_frames_expected": tally.expected_bad,
        "bad_frames_counted": int(counted),
        "mutants_redrawn": tally.redrawn,
        "forged_results_taken": tally.results_taken,
        **changes,
        "scheduler_rss_mb": vm_kb(pid, "VmRSS") / 1024,
        "rss_before_mb": rss_before / 1024,
        "rss_peak_mb": vm_kb(pid, "VmHWM") / 1024,
        "ids": ids,
    }


def fuzz_failures(result: dict[str, Any]) -> int:
    """What a fuzz run must not show: a crash, a wedge, an unreadable reply, a job or a
    move the honest client did not make, a refused frame not counted."""
    bad = ("crashes", "stalls", "unreadable_replies", "foreign_jobs", "moved_jobs", "workflows")
    bad += ("wrong_results", "forged_results_taken")
    miscounted = result["bad_frames_counted"] != result["bad_frames_expected"]
    return sum(result[k] for k in bad) + int(miscounted)
