"""The scheduler's bookkeeping alone (issue 19, part 2): the CPU time the job table and the
strategy spend per job, with no actors, no sockets, no SQLite and no event loop.

``python -m bench.table_path [ROUNDS] [BATCH] [BACKLOG]`` drives a real ``JobTable`` and the
bench's default strategy (``priority``) through what the scheduler does for the throughput
mode's jobs (no-op task, default queue, no key, no parents), one batch of BATCH jobs at a
time: create them ready and seal the write (``submissions.submit``), hand them to the
strategy as ``ReadyJob`` (``Scheduler._enqueue``), credit four workers and ``match``
(``StrategyActor``), lease the picks (``leases.lease``), succeed them (``leases.results``)
and settle them (``Scheduler._after_commit``). BACKLOG jobs (default 20,000: the four
frames of 5,000 the load generator keeps in flight) wait in the ready queue throughout,
so the queue is as deep as in a real run. Only the process's CPU time inside a round is
counted (``time.process_time``); the median over ROUNDS rounds is printed per step.

It runs on a tree without the batch forms too (``JobTable.create_all``, ``lease_all``,
``succeed_all``, ``settle_all``): then it takes the per-job methods, as that tree's
scheduler does. For an A/B, run this file with ``PYTHONPATH`` at the other tree.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from actors import job_spec
from actors.config import SchedulerConfig
from actors.lifecycle import QUEUED
from actors.scheduler.jobs import Job, JobTable
from actors.scheduler.messages import ReadyJob
from actors.scheduler.ops import Ops
from strategies import create
from strategies.base import Strategy
from transport import protocol as wire

WORKERS = 4
STEPS = ("create", "enqueue", "match", "lease", "succeed", "settle")


def _batched(table: JobTable) -> bool:
    return hasattr(table, "create_all")


def _create(table: JobTable, specs: list[wire.JobSpec]) -> list[Job]:
    ops = Ops()
    if _batched(table):
        jobs = table.create_all(specs, ops)
        table.move_all(jobs, QUEUED, ops)
    else:
        jobs = []
        for spec in specs:
            job = table.create(spec, ops)
            table.move(job, QUEUED, ops)
            jobs.append(job)
    ops.seal()
    return jobs


def _enqueue(strategy: Strategy, jobs: list[Job]) -> None:
    now = time.monotonic()
    for j in jobs:
        strategy.push(ReadyJob(j.id, j.priority, j.queue, j.id, now, False, j.task))


def _match(strategy: Strategy, batch: int) -> list[tuple[int, bytes]]:
    for n in range(WORKERS):
        peer = b"w%d" % n
        strategy.credit(peer, f"w{n}", ("default",), frozenset(), batch, batch // WORKERS)
    return strategy.match()


def _lease(table: JobTable, picks: list[tuple[int, bytes]]) -> list[Job]:
    ops = Ops()
    names = {b"w%d" % n: f"w{n}" for n in range(WORKERS)}
    if _batched(table):
        leased, _ = table.lease_all(picks, names, ops)
        return [table.jobs[a.job_id] for _, a in leased]
    for job_id, peer in picks:
        table.lease(job_id, peer, names[peer], ops)
    return [table.jobs[job_id] for job_id, _ in picks]


def _succeed(table: JobTable, jobs: list[Job]) -> None:
    ops = Ops()
    if _batched(table):
        table.succeed_all([(job, wire.NONE_RAW) for job in jobs], ops)
    else:
        for job in jobs:
            table.succeed(job, wire.NONE_RAW, ops)


def _settle(table: JobTable, jobs: list[Job]) -> None:
    if _batched(table):
        table.settle_all(jobs)
    else:
        for job in jobs:
            table.settle(job)


def _timed(cpu: dict[str, float], step: str, call: Callable[[], Any]) -> Any:
    started = time.process_time()
    value = call()
    cpu[step] += time.process_time() - started
    return value


def _round(table: JobTable, strategy: Strategy, batch: int) -> dict[str, float]:
    cpu = dict.fromkeys(STEPS, 0.0)
    specs = [job_spec("bench.noop")] * batch
    jobs = _timed(cpu, "create", lambda: _create(table, specs))
    _timed(cpu, "enqueue", lambda: _enqueue(strategy, jobs))
    picks = _timed(cpu, "match", lambda: _match(strategy, batch))
    leased = _timed(cpu, "lease", lambda: _lease(table, picks))
    _timed(cpu, "succeed", lambda: _succeed(table, leased))
    _timed(cpu, "settle", lambda: _settle(table, leased))
    return cpu


def main(rounds: int = 50, batch: int = 2000, backlog: int = 20000) -> None:
    table = JobTable(SchedulerConfig())
    strategy = create("priority")
    _enqueue(strategy, _create(table, [job_spec("bench.noop")] * backlog))
    for _ in range(5):  # warm up: the recent window fills, the dicts grow
        _round(table, strategy, batch)
    per_step: dict[str, list[float]] = {step: [] for step in (*STEPS, "total")}
    for _ in range(rounds):
        cpu = _round(table, strategy, batch)
        for step, seconds in cpu.items():
            per_step[step].append(seconds / batch * 1e6)
        per_step["total"].append(sum(cpu.values()) / batch * 1e6)
    form = "batched" if _batched(table) else "per job"
    print(f"JobTable + priority strategy, {form}: {rounds} rounds of {batch}, backlog {backlog}")
    for step, values in per_step.items():
        values.sort()
        print(
            f"{step:8} us/job: median {statistics.median(values):6.2f}  "
            f"min {values[0]:6.2f}  max {values[-1]:6.2f}"
        )


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:4]))
