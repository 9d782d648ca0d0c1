"""Chaos: jobs run while workers are SIGKILLed, paused (SIGSTOP, then SIGCONT: zombies) and
the scheduler is SIGKILLed and restarted within the lease.

Every execution is recorded outside corral (``bench.ledgered``: a ``start`` line, a ``tick``
line every 10 ms while it works, and an ``end`` line, or an ``exit`` line when the worker
stopped it, each with the process id and its parent's). Afterwards it checks, independently
of the scheduler's bookkeeping:

- every job ended SUCCEEDED, exactly once: one committed result per job (its stored history
  holds one success, under a token no other attempt of it ended with);
- the committed result is the one from the job's last fencing token that ran;
- no two executions of one job were *active* at the same time. A SIGSTOPped process does
  nothing, so the time a worker agent was paused is not active time of the handlers it runs
  itself (threads, async); a process-pool child is not paused with its agent, so its
  handlers count as active throughout. What a handler thread does after its process
  resumes from a pause longer than the lease is judged by the late-finish check instead;
- no stale start: no handler started after another execution of the same job, under a
  larger token, had already started (the lease it started under had lapsed);
- no late finish: no handler of a worker paused for longer than the lease was still
  working more than 100 ms after the worker resumed (it must have fenced itself).

Every other pause stops the worker's whole process family (agent, fork server, pool
children: a process group's Ctrl-Z); a pool child paused with its agent must be gone by its
lease's expiry, which the overlap check sees (its activity ends at its last line).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import random
import signal
import subprocess
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from actors import AsyncClient, job_spec
from bench.children import family
from bench.harness import Cluster, wait_for_port
from transport import protocol as wire

# Lease timings for chaos runs: a restarted scheduler (about half a second to start a Python
# process under load) is back well within the lease, and a pause of PAUSE_S outlasts
# lease + grace, so the paused worker's jobs are reclaimed and run elsewhere meanwhile.
CHAOS_TIMINGS = (
    "--heartbeat-interval",
    "0.2",
    "--suspect-after",
    "0.6",
    "--lease",
    "2.0",
    "--lease-grace",
    "0.5",
    "--backoff-base",
    "0.05",
    "--backoff-cap",
    "1",
)
CHAOS_LEASE_S = 2.0

# A handler still working this long after its paused worker resumed past a lapsed lease
# finished late (the bound; self-fencing stops it within a loop turn or two).
LATE_AFTER_S = 0.1
# The ledgered task ticks this often; a handler killed between ticks stopped at most this
# much after its last line.
TICK_S = 0.01


@dataclass
class Faults:
    """How often each fault is injected (seconds; 0 turns it off)."""

    kill_every: float = 2.0
    pause_every: float = 2.5
    pause_seconds: float = 3.0  # longer than lease + grace: the paused worker's jobs move on
    restart_every: float = 5.0


@dataclass
class ChaosReport:
    jobs: int
    succeeded: int = 0
    executions: int = 0
    kills: int = 0
    pauses: int = 0
    restarts: int = 0
    seconds: float = 0.0
    wrong_token: list[int] = field(default_factory=list)
    overlaps: list[int] = field(default_factory=list)
    stale_starts: list[int] = field(default_factory=list)
    late_finishes: list[int] = field(default_factory=list)
    not_succeeded: list[int] = field(default_factory=list)
    committed_twice: list[int] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        bad = (self.wrong_token, self.overlaps, self.stale_starts, self.late_finishes)
        return self.succeeded == self.jobs and not any(bad) and not self.committed_twice

    def lines(self) -> list[str]:
        return [
            f"{self.jobs} jobs in {self.seconds:.1f}s: {self.kills} workers SIGKILLed, "
            f"{self.pauses} paused (SIGSTOP/SIGCONT), {self.restarts} scheduler restarts",
            f"every job SUCCEEDED exactly once: {self.succeeded}/{self.jobs}"
            + (f" (not: {self.not_succeeded[:10]})" if self.not_succeeded else ""),
            f"executions recorded: {self.executions} ({self.executions - self.jobs} re-runs)",
            f"no result committed twice: {_verdict(self.committed_twice)}",
            f"committed result is the last token's: {_verdict(self.wrong_token)}",
            f"no overlapping executions of a job: {_verdict(self.overlaps)}",
            f"no stale starts (a handler started after its lease lapsed): "
            f"{_verdict(self.stale_starts)}",
            f"no late finishes (running > {LATE_AFTER_S * 1000:.0f} ms after a paused worker "
            f"resumed past its lease): {_verdict(self.late_finishes)}",
        ]


def _verdict(bad: list[int]) -> str:
    return "yes" if not bad else f"NO ({len(bad)}), e.g. jobs {bad[:10]}"


Event = tuple[str, int, int, float, int, int]  # kind, job, token, time, pid, parent pid


@dataclass
class Execution:
    job: int
    token: int
    pid: int
    parent: int
    start: float
    last: float  # time of its last ledger line
    closed: bool = False  # it wrote "end" or "exit"


@dataclass
class Pause:
    pid: int
    stopped: float
    resumed: float


def read_ledger(cluster: Cluster) -> list[Event]:
    events = []
    for path in cluster.dir.glob("*.ledger"):
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) != 6:
                continue  # a line cut by a SIGKILL mid-write
            kind, job, token, at, pid, parent = parts
            events.append((kind, int(job), int(token), float(at), int(pid), int(parent)))
    return events


def executions_of(events: list[Event]) -> list[Execution]:
    runs: dict[tuple[int, int, int], Execution] = {}
    for kind, job, token, at, pid, parent in sorted(events, key=lambda e: e[3]):
        key = (job, token, pid)
        if kind == "start":
            runs[key] = Execution(job, token, pid, parent, at, at)
        elif key in runs:
            runs[key].last = at
            runs[key].closed = kind in ("end", "exit")
    return list(runs.values())


def _active(
    run: Execution, stop: float, pauses: list[Pause], lease: float
) -> list[tuple[float, float]]:
    """The intervals in which the execution could act: its own process not stopped.

    After a pause longer than the lease, what the handler still did is a zombie's tail:
    it is judged as a late finish (more than LATE_AFTER_S), not as an overlap, because a
    handler thread resumes with its process and runs until the worker's fence stops it, a
    loop turn later."""
    spans = [(run.start, stop)]
    for pause in pauses:
        if pause.pid != run.pid:
            continue
        lapsed = pause.resumed - pause.stopped > lease
        cut: list[tuple[float, float]] = []
        for a, b in spans:
            if pause.resumed <= a or pause.stopped >= b:
                cut.append((a, b))
                continue
            if a < pause.stopped:
                cut.append((a, pause.stopped))
            if pause.resumed < b and not lapsed:
                cut.append((pause.resumed, b))
        spans = cut
    return spans


def check(
    report: ChaosReport,
    outcomes: dict[int, wire.JobOutcome],
    events: list[Event],
    killed_at: dict[int, float],
    pauses: list[Pause],
    lease: float = CHAOS_LEASE_S,
) -> None:
    runs = executions_of(events)
    report.executions = len(runs)
    per_job: dict[int, list[Execution]] = defaultdict(list)
    for run in runs:
        per_job[run.job].append(run)

    def stop_of(run: Execution) -> float:
        if run.closed:
            return run.last
        killed = killed_at.get(run.pid, killed_at.get(run.parent))
        # A process that vanished without a word stopped at most a tick after its last line.
        return killed if killed is not None else run.last + TICK_S

    for job_id, outcome in outcomes.items():
        executions = sorted(per_job.get(job_id, []), key=lambda r: r.start)
        if outcome.status != "SUCCEEDED":
            report.not_succeeded.append(job_id)
        else:
            report.succeeded += 1
            if not executions or wire.unpack(outcome.result) != max(r.token for r in executions):
                report.wrong_token.append(job_id)
        spans = sorted(
            span for run in executions for span in _active(run, stop_of(run), pauses, lease)
        )
        if any(b[0] < a[1] for a, b in itertools.pairwise(spans)):
            report.overlaps.append(job_id)
        if any(
            later.start > earlier.start and later.token < earlier.token
            for earlier, later in itertools.permutations(executions, 2)
        ):
            report.stale_starts.append(job_id)
        for run in executions:
            owner = {run.pid, run.parent}
            for pause in pauses:
                lapsed = pause.resumed - pause.stopped > lease
                held = run.start < pause.stopped and stop_of(run) > pause.stopped
                late = run.last > pause.resumed + LATE_AFTER_S
                if pause.pid in owner and lapsed and held and late:
                    report.late_finishes.append(job_id)
                    break


class _Chaos:
    """The fault injector: one loop, faults due by their own clocks."""

    def __init__(
        self, cluster: Cluster, faults: Faults, concurrency: int, report: ChaosReport, pool: str
    ):
        self.cluster = cluster
        self.pool = pool
        self.faults = faults
        self.concurrency = concurrency
        self.report = report
        self.rng = random.Random(7)
        self.killed_at: dict[int, float] = {}
        self.paused: dict[int, float] = {}  # pid -> when it was stopped
        self.groups: dict[int, list[int]] = {}  # a paused worker's pid -> every pid stopped
        self.pauses: list[Pause] = []

    def _alive_workers(self) -> list[subprocess.Popen[bytes]]:
        return [p for p in self.cluster.workers if p.poll() is None and p.pid not in self.paused]

    async def kill_worker(self) -> None:
        alive = self._alive_workers()
        if len(alive) < 2:
            return
        victim = self.rng.choice(alive)
        victim.send_signal(signal.SIGKILL)
        self.killed_at[victim.pid] = time.time()
        self.report.kills += 1
        self.cluster.start_workers(1, self.concurrency, module="bench.tasks", pool=self.pool)

    async def pause_worker(self) -> None:
        alive = self._alive_workers()
        if len(alive) < 2:
            return
        victim = self.rng.choice(alive)
        # Every other pause stops the worker with its fork server and pool children (a
        # process group's Ctrl-Z), the others the agent alone.
        group = family(victim.pid) if self.report.pauses % 2 else [victim.pid]
        for pid in group:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
        self.paused[victim.pid] = time.time()
        self.groups[victim.pid] = group
        self.report.pauses += 1

        def resume() -> None:
            if victim.pid in self.paused:  # else the end of the run resumed it already
                self._resume(victim.pid)

        asyncio.get_running_loop().call_later(self.faults.pause_seconds, resume)

    def _resume(self, victim: int) -> None:
        stopped = self.paused.pop(victim)
        for pid in self.groups.pop(victim, [victim]):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
                self.pauses.append(Pause(pid, stopped, time.time()))

    async def restart_scheduler(self) -> None:
        scheduler = self.cluster.scheduler
        assert scheduler is not None
        scheduler.send_signal(signal.SIGKILL)
        scheduler.wait()
        restarted = self.cluster.spawn_scheduler()  # here: it dies with this thread's process
        # In a thread: waiting for it to listen must not hold back the pause timers.
        log = self.cluster.dir / "scheduler.log"
        await asyncio.to_thread(wait_for_port, self.cluster.address, restarted, log=log)
        self.report.restarts += 1

    async def run_until(self, done: asyncio.Event) -> None:
        plan = [
            (self.faults.kill_every, self.kill_worker),
            (self.faults.pause_every, self.pause_worker),
            (self.faults.restart_every, self.restart_scheduler),
        ]
        now = time.monotonic()
        due = [now + every if every > 0 else float("inf") for every, _ in plan]
        while not done.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), max(0.0, min(due) - time.monotonic()))
            if done.is_set():
                break
            now = time.monotonic()
            for i, (every, fault) in enumerate(plan):
                if due[i] <= now:
                    await fault()
                    due[i] = time.monotonic() + every
        for pid in list(self.paused):  # let no worker stay stopped after the run
            self._resume(pid)


async def _count_finished(address: str) -> int | None:
    """Jobs in a final state, or None while no scheduler answers."""
    try:
        async with AsyncClient(address, connect_timeout=2, request_timeout=5) as client:
            status = await client.status()
    except Exception:  # the scheduler is down or restarting: ask again later
        return None
    return sum(status.jobs.get(s, 0) for s in ("SUCCEEDED", "FAILED", "CANCELLED"))


async def _committed_twice(client: AsyncClient, ids: list[int]) -> list[int]:
    """Jobs whose stored history is not one success under a token no other attempt ended."""
    twice = []
    for i in range(0, len(ids), 500):  # a few hundred requests in flight at a time
        views = await asyncio.gather(*(client.job(j) for j in ids[i : i + 500]))
        for view in filter(None, views):
            tokens = [a.token for a in view.history]
            wins = sum(a.outcome == "succeeded" for a in view.history)
            twice += [view.job_id] if wins != 1 or len(set(tokens)) != len(tokens) else []
    return twice


async def run_chaos(
    cluster: Cluster,
    jobs: int,
    workers: int,
    concurrency: int,
    faults: Faults,
    job_seconds: float,
    long_seconds: float = 3.0,
    long_every: int = 50,
    progress: Any = None,
    timeout: float = 600.0,
    pool: str = "process",
    also: Callable[[asyncio.Event], Awaitable[None]] | None = None,
) -> ChaosReport:
    """Drive a started scheduler (with CHAOS_TIMINGS) through a chaos run; the caller owns
    ``cluster``. One job in ``long_every`` works ``long_seconds``, longer than lease + grace,
    so pauses catch jobs mid-flight and their leases lapse while they run. ``pool`` is the
    workers' pool for these sync jobs: a paused agent's process-pool children must stop by
    themselves, its threads are paused with it. ``also``: another fault injector, run
    alongside until every job finished (bench.leaders kills leaders)."""
    report = ChaosReport(jobs)
    chaos = _Chaos(cluster, faults, concurrency, report, pool)
    cluster.start_workers(workers, concurrency, module="bench.tasks", pool=pool)
    started = time.monotonic()
    seconds = [
        long_seconds if long_every and i % long_every == 0 else job_seconds for i in range(jobs)
    ]
    async with AsyncClient(cluster.address, connect_timeout=20) as client:
        # Keyed: a frame in flight when the leader changes is sent again, not lost.
        specs = [
            job_spec("bench.ledgered", [s], max_retries=1000, idempotency_key=f"chaos-{i}")
            for i, s in enumerate(seconds)
        ]
        ids = await client.submit_many(specs)
    done = asyncio.Event()
    injecting = asyncio.gather(chaos.run_until(done), *([also(done)] if also else []))
    try:
        while time.monotonic() - started < timeout:
            finished = await _count_finished(cluster.address)
            if finished is not None and progress is not None:
                progress(finished, jobs)
            if finished == jobs:
                break
            await asyncio.sleep(0.25)
    finally:
        done.set()
        await injecting
    async with AsyncClient(cluster.address, connect_timeout=20) as client:
        outcomes = await client.wait(ids, timeout=60)
        report.seconds = time.monotonic() - started
        report.committed_twice = await _committed_twice(client, ids)
    check(report, outcomes, read_ledger(cluster), chaos.killed_at, chaos.pauses)
    return report
