"""Chaos: jobs run while a random worker is SIGKILLed every ``kill_every`` seconds and replaced.

Every execution is recorded outside corral (``bench.ledgered``: a start and an end line per
execution, per process). Afterwards it checks, independently of the scheduler's bookkeeping:

- every job ended SUCCEEDED, exactly once (one committed result per job);
- the committed result is the one from the job's last fencing token;
- no two executions of one job overlapped in time (a killed execution ends at its kill).
"""

from __future__ import annotations

import asyncio
import itertools
import random
import signal
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from actors.client import AsyncClient, job_spec
from bench.harness import Cluster
from transport import protocol as wire


@dataclass
class ChaosReport:
    jobs: int
    succeeded: int = 0
    executions: int = 0
    kills: int = 0
    seconds: float = 0.0
    wrong_token: list[int] = field(default_factory=list)
    overlaps: list[int] = field(default_factory=list)
    not_succeeded: list[int] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (
            self.succeeded == self.jobs
            and not self.wrong_token
            and not self.overlaps
            and not self.not_succeeded
        )

    def lines(self) -> list[str]:
        return [
            f"{self.jobs} jobs, {self.kills} workers SIGKILLed, {self.seconds:.1f}s",
            f"every job SUCCEEDED exactly once: {self.succeeded}/{self.jobs}"
            + (f" (not: {self.not_succeeded[:10]})" if self.not_succeeded else ""),
            f"executions recorded: {self.executions} ({self.executions - self.jobs} re-runs)",
            f"committed result is the last token's: {_verdict(self.wrong_token)}",
            f"no overlapping executions of a job: {_verdict(self.overlaps)}",
        ]


def _verdict(bad: list[int]) -> str:
    return "yes" if not bad else f"NO, e.g. jobs {bad[:10]}"


Event = tuple[str, int, int, float, int]  # kind, job, token, time, pid


def read_ledger(cluster: Cluster) -> list[Event]:
    events = []
    for path in cluster.dir.glob("*.ledger"):
        for line in path.read_text().splitlines():
            kind, job, token, at, pid = line.split()
            events.append((kind, int(job), int(token), float(at), int(pid)))
    return events


def check(
    report: ChaosReport,
    outcomes: dict[int, wire.JobOutcome],
    events: list[Event],
    killed_at: dict[int, float],
) -> None:
    runs: dict[tuple[int, int, int], list[float | None]] = {}
    for kind, job, token, at, pid in sorted(events, key=lambda e: e[3]):
        key = (job, token, pid)
        if kind == "start":
            runs[key] = [at, None]
        elif key in runs:
            runs[key][1] = at
    report.executions = len(runs)
    per_job: dict[int, list[tuple[float, float, int]]] = defaultdict(list)
    for (job, token, pid), (start, end) in runs.items():
        stop = end if end is not None else killed_at.get(pid, float("inf"))
        assert start is not None
        per_job[job].append((start, stop, token))
    for job_id, outcome in outcomes.items():
        if outcome.status != "SUCCEEDED":
            report.not_succeeded.append(job_id)
            continue
        report.succeeded += 1
        executions = sorted(per_job.get(job_id, []))
        if not executions or wire.unpack(outcome.result) != max(t for _, _, t in executions):
            report.wrong_token.append(job_id)
        for (_, first_stop, _), (second_start, _, _) in itertools.pairwise(executions):
            if second_start < first_stop:
                report.overlaps.append(job_id)
                break


async def run_chaos(
    cluster: Cluster,
    jobs: int,
    workers: int,
    concurrency: int,
    kill_every: float,
    job_seconds: float,
    progress: Any = None,
) -> ChaosReport:
    """Drive a started scheduler through a chaos run; the caller owns ``cluster``."""
    rng = random.Random(7)
    report = ChaosReport(jobs)
    killed_at: dict[int, float] = {}
    cluster.start_workers(workers, concurrency, module="bench.tasks")
    started = time.monotonic()
    async with AsyncClient(cluster.address, connect_timeout=20) as client:
        ids = await client.submit_many(
            [job_spec("bench.ledgered", [job_seconds], max_retries=1000)] * jobs
        )
        waiting = asyncio.ensure_future(client.wait(ids, timeout=600))
        while not waiting.done():
            await asyncio.wait([waiting], timeout=kill_every)
            if waiting.done():
                break
            alive = [p for p in cluster.workers if p.poll() is None]
            victim = rng.choice(alive)
            victim.send_signal(signal.SIGKILL)
            killed_at[victim.pid] = time.time()
            report.kills += 1
            cluster.start_workers(1, concurrency, module="bench.tasks")
            if progress is not None:
                status = await client.status()
                progress(status.jobs.get("SUCCEEDED", 0), jobs)
        outcomes = waiting.result()
    report.seconds = time.monotonic() - started
    for proc in cluster.workers:
        proc.wait() if proc.poll() is not None else None
    check(report, outcomes, read_ledger(cluster), killed_at)
    return report
