"""``python -m bench``: measure corral end to end on real processes.

Every mode starts a real scheduler on a fresh SQLite file (WAL, acknowledgements after
commit), or on the PostgreSQL database ``--db`` names, and real worker processes, drives
them through the client SDK over ZeroMQ, counts every execution outside corral (``lost``,
``duplicated``), and stops all it started.

Modes (one per run):
  --jobs N [--workers W] [--concurrency C]   throughput: submit N no-op jobs as fast as the
                                             SDK allows, time until the last completes
        [--prefetch P]                       ...each worker holding P jobs beyond its slots
        [--job-ms MS]                        ...each job awaiting MS ms instead of none
        [--status-every S]                   ...while asking for status every S seconds
  --rate R --duration S                      steady rate: one job at a time at R jobs/s;
                                             submit->start and submit->done percentiles
  --backlog N                                enqueue N jobs with no workers, then start them
                                             and time the drain; scheduler RSS with the backlog
  --scale 1,2,4,8 [--jobs N]                 throughput at each worker count
  --chaos [--jobs N] [--kill-every S]        worker SIGKILLs, worker pauses (SIGSTOP, SIGCONT)
        [--pause-every S --pause-seconds S]  and scheduler SIGKILL + restart within the lease;
        [--restart-every S]                  checks no double commit, results from the last
                                             token, no overlapping runs, no stale starts, no
                                             late finishes (see bench/chaos.py)
  --chaos --db postgresql://... --schedulers N --kill-leader-every S
                                             N schedulers on one database (workers and the
                                             client follow the leader); the leader SIGKILLed
                                             every S s and restarted as a standby, instead of
                                             --restart-every; takeover times (bench/leaders.py)
  --dag [--layers L --width W --chain N]     a wide workflow (L x W steps) and a chain of N
  --inproc [--jobs N]                        everything in one process (in-memory transport,
                                             real SQLite): CPU time per job, for comparing
                                             versions of the hot path
  --floor --rate R --duration S              no corral: two ZeroMQ hops through a forwarder,
                                             the floor under --rate's submit->start
  --curve [--rate R | --floor] [--rounds N]  the mode without and with CURVE keys, N rounds
                                             of a pair (bench/curve.py); with --rate both
                                             clusters at once, the jobs alternating between
                                             them each second (bench/curve_rate.py)
  --ceiling [--jobs N] [--workers W]         no corral: the throughput mode's work through a
                                             stripped batch pipeline (bench/ceiling.py)
  --jobs N --with-ceiling                    throughput, then the ceiling on the same --db,
                                             side by side with the ratio
  --fuzz [--frames N --seed S --peers P]     hostile frames from P raw sockets while a worker
                                             runs honest jobs; replies, RSS, store changes
  --retention [--per-day N --days D]         a database that ran N jobs a day for D days
        [--keep 1d --rate R --duration S]    (1M, 7; backdated rows), then commit latency
                                             before, during and after a purge down to
                                             --keep; file size, purge time (bench/retention.py)
  --delayed [--jobs N --spacing MS]          N delayed jobs due MS apart: how late each starts
                                             after its time, and none early (bench/timing.py)
  --rate-limit R [--duration S]              a limit of R/s on a backlog 1.2 x what it lets
                                             through in S s: starts per second in the window
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from bench import ceiling, curve, modes, options, timing
from bench.chaos import CHAOS_TIMINGS, Faults, run_chaos
from bench.curve_rate import side_by_side
from bench.dag import run_dag
from bench.floor import run_floor
from bench.harness import Cluster
from bench.inproc import run_inproc
from bench.leaders import LeaderKiller, Schedulers
from bench.report import show, show_rows
from bench.retention import run_retention


def progress_bar(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )


def run_once(
    args: argparse.Namespace,
    console: Console,
    mode: Callable[[Cluster, Progress], Coroutine[Any, Any, dict[str, Any]]],
    scheduler_args: tuple[str, ...] = (),
    curve: bool = False,
) -> dict[str, Any]:
    """One mode on a fresh cluster (``curve``: every process with a key); adds the
    independently counted lost/duplicated."""
    cluster = Cluster(
        ("--strategy", args.strategy, *scheduler_args),
        db=args.db,
        curve=curve,
        prefetch=args.prefetch,
    )
    try:
        cluster.start_scheduler()
        with progress_bar(console) as progress:
            result = asyncio.run(mode(cluster, progress))
        time.sleep(1.1)  # the scheduler publishes metric snapshots once a second
        for name, figures in cluster.scheduler_histograms().items():
            result[name.removeprefix("corral_").removesuffix("_seconds") + "_ms"] = figures
    finally:
        cluster.stop()
    ids = result.pop("ids")
    runs = cluster.executions()
    result["lost"] = sum(1 for i in ids if runs[i] == 0)
    result["duplicated"] = sum(runs[i] - 1 for i in ids if runs[i] > 1)
    result["prefetch"] = args.prefetch
    return result


def main(argv: list[str] | None = None) -> int:
    parser = options.parser(__doc__ or "")
    args = parser.parse_args(argv)
    if args.schedulers > 1 and not (args.chaos and (args.db or "").startswith("postgresql")):
        parser.error("--schedulers N runs with --chaos on a --db postgresql://... database")
    if args.kill_leader_every and args.schedulers < 2:
        parser.error("--kill-leader-every needs --schedulers 2 or more")
    console = Console(stderr=args.json)

    if args.inproc:
        import uvloop

        return report(uvloop.run(run_inproc(args.jobs, args.concurrency)), args, console)
    if args.floor and args.curve:
        rate = args.rate or 200.0
        floors = curve.one_after_the_other(
            lambda keyed: run_floor(rate, args.duration, keyed, True)
        )
        return report(curve.compare(args.rounds, floors, console), args, console)
    if args.delayed:
        spacing, jobs = args.spacing, args.jobs
        return report(
            run_once(args, console, lambda c, p: timing.delayed(c, jobs, spacing, 2, 16, p)),
            args,
            console,
        )
    if args.rate_limit:
        rate, seconds = args.rate_limit, args.duration
        return report(
            run_once(args, console, lambda c, p: timing.rate_limited(c, rate, seconds, 2, 64, p)),
            args,
            console,
        )
    if args.retention:
        figures = run_retention(
            args.per_day, args.days, args.keep, args.rate or 200.0, args.duration
        )
        return report(figures, args, console)
    if args.floor:
        return report(run_floor(args.rate or 200.0, args.duration), args, console)
    if args.ceiling:
        return report(
            ceiling.run_ceiling(args.jobs, args.workers, args.concurrency, args.db, args.timeout),
            args,
            console,
        )
    if args.chaos:
        return chaos(args, console)
    if args.fuzz:
        fuzzed = run_once(
            args, console, lambda c, p: modes.fuzz(c, args.frames, args.seed, args.peers, p)
        )
        return report(fuzzed, args, console, modes.fuzz_failures(fuzzed))
    if args.dag:
        return dag(args, console)
    if args.scale:
        return scale(args, console)
    if args.curve:
        if args.rate and not args.db:  # interleaved by the second (bench/curve_rate.py)
            pair = side_by_side(
                args.strategy, args.rate, args.duration, args.workers, args.concurrency
            )
        else:
            pair = curve.one_after_the_other(lambda keyed: one_mode(args, console, keyed))
        return report(curve.compare(args.rounds, pair, console), args, console)
    if args.rate:
        result = run_once(
            args,
            console,
            lambda c, p: modes.steady_rate(
                c, args.rate, args.duration, args.workers, args.concurrency, p
            ),
        )
    elif args.backlog:
        result = run_once(
            args,
            console,
            lambda c, p: modes.backlog(
                c, args.backlog, args.workers, args.concurrency, p, args.timeout
            ),
        )
    else:
        result = run_once(
            args,
            console,
            lambda c, p: modes.throughput(
                c,
                args.jobs,
                args.workers,
                args.concurrency,
                p,
                args.status_every,
                args.timeout,
                args.job_ms,
            ),
        )
        if args.with_ceiling:
            with console.status("the ceiling: the same jobs through the stripped pipeline"):
                stripped = ceiling.run_ceiling(
                    args.jobs, args.workers, args.concurrency, args.db, args.timeout
                )
            result = ceiling.beside(result, stripped)
    return report(result, args, console)


def one_mode(args: argparse.Namespace, console: Console, keyed: bool) -> dict[str, Any]:
    """One run of throughput, or of --rate when given, with CURVE keys or not."""
    if args.rate:
        return run_once(
            args,
            console,
            lambda c, p: modes.steady_rate(
                c, args.rate, args.duration, args.workers, args.concurrency, p, samples=True
            ),
            curve=keyed,
        )
    return run_once(
        args,
        console,
        lambda c, p: modes.throughput(
            c, args.jobs, args.workers, args.concurrency, p, 0.0, args.timeout
        ),
        curve=keyed,
    )


def report(
    result: dict[str, Any], args: argparse.Namespace, console: Console, failures: int = 0
) -> int:
    """Print one mode's result (JSON or a table); exit status 1 if a job was lost or
    ran twice, or the mode counted other ``failures``."""
    print(json.dumps(result)) if args.json else show(result, console)
    return 0 if result["lost"] == 0 and result["duplicated"] == 0 and not failures else 1


def scale(args: argparse.Namespace, console: Console) -> int:
    rows = []
    for workers in [int(w) for w in args.scale.split(",")]:
        result = run_once(
            args,
            console,
            lambda c, p, w=workers: modes.throughput(
                c, args.jobs, w, args.concurrency, p, 0.0, args.timeout
            ),
        )
        rows.append(
            {
                "workers": workers,
                "jobs": result["jobs"],
                "seconds": result["seconds"],
                "jobs_per_s": result["jobs_per_s"],
                "machine_cpu_busy_pct": result["machine_cpu_busy_pct"],
                "lost": result["lost"],
                "duplicated": result["duplicated"],
            }
        )
    ok = all(r["lost"] == 0 and r["duplicated"] == 0 for r in rows)
    if args.json:
        print(
            json.dumps(
                {
                    "mode": "scaling",
                    "runs": rows,
                    "lost": sum(r["lost"] for r in rows),
                    "duplicated": sum(r["duplicated"] for r in rows),
                }
            )
        )
    else:
        show_rows("corral bench: scaling", rows, console)
    return 0 if ok else 1


def dag(args: argparse.Namespace, console: Console) -> int:
    cluster = Cluster(("--strategy", args.strategy), db=args.db)
    try:
        cluster.start_scheduler()
        with console.status("running the wide workflow, then the chain"):
            results = asyncio.run(
                run_dag(
                    cluster, args.layers, args.width, args.chain, args.workers, args.concurrency
                )
            )
    finally:
        cluster.stop()
    runs = cluster.executions()
    ok = True
    for result in results.values():
        ids = result.pop("ids")
        result["lost"] = sum(1 for i in ids if runs[i] == 0)
        result["duplicated"] = sum(runs[i] - 1 for i in ids if runs[i] > 1)
        ok = ok and result["lost"] == 0 and result["duplicated"] == 0
        ok = ok and result["succeeded"] == result["steps"]
    if args.json:
        print(json.dumps({"mode": "dag", **results}))
    else:
        show_rows("corral bench: dag", [{"run": k, **v} for k, v in results.items()], console)
    return 0 if ok else 1


def chaos(args: argparse.Namespace, console: Console) -> int:
    scheduler_args = ("--strategy", args.strategy, *CHAOS_TIMINGS)
    cluster = Cluster(scheduler_args, db=args.db, prefetch=args.prefetch)
    workers = min(args.workers, 4)
    faults = Faults(args.kill_every, args.pause_every, args.pause_seconds, args.restart_every)
    killer = None
    if args.schedulers > 1:  # leaders are killed instead of the one scheduler restarted
        cluster = Schedulers(scheduler_args, args.db, args.schedulers, prefetch=args.prefetch)
        killer = LeaderKiller(cluster, args.kill_leader_every)
        faults.restart_every = 0
    try:
        cluster.start_scheduler()
        with progress_bar(console) as progress:
            bar = progress.add_task("jobs finished (under chaos)", total=args.jobs)
            report = asyncio.run(
                run_chaos(
                    cluster,
                    args.jobs,
                    workers,
                    min(args.concurrency, 8),
                    faults,
                    args.job_seconds,
                    progress=lambda done, _: progress.update(bar, completed=done),
                    pool=args.pool,
                    long_every=args.long_every,
                    also=killer.run_until if killer and args.kill_leader_every else None,
                )
            )
    finally:
        cluster.stop()
    leaders = killer.measure() if killer else None
    ok = report.ok and (leaders is None or leaders.ok)
    if args.json:
        print(
            json.dumps(
                {
                    "mode": "chaos",
                    "jobs": report.jobs,
                    "completed": report.succeeded,
                    "seconds": report.seconds,
                    "jobs_per_s": report.jobs / report.seconds,
                    "kills": report.kills,
                    "pauses": report.pauses,
                    "restarts": report.restarts,
                    "executions": report.executions,
                    "wrong_token": len(report.wrong_token),
                    "overlaps": len(report.overlaps),
                    "stale_starts": len(report.stale_starts),
                    "late_finishes": len(report.late_finishes),
                    "committed_twice": len(report.committed_twice),
                    "lost": len(report.not_succeeded),
                    "duplicated": 0,
                    **(leaders.figures() if leaders else {}),
                    "ok": ok,
                }
            )
        )
    else:
        console.print("[bold]corral bench: chaos[/] — what it checked:")
        for line in report.lines() + (leaders.lines() if leaders else []):
            console.print(f"  {line}")
        console.print("[green]PASS[/]" if ok else "[red]FAIL[/]")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
