"""``python -m bench``: measure corral end to end on real processes.

Modes (one per run):
  --jobs N [--workers W] [--concurrency C]   throughput: submit N no-op jobs, time until all done
  --chaos [--jobs N] [--kill-every S]        random worker SIGKILLs; checks no double commit,
                                             results from the last token, no overlapping runs
  --dag [--layers L --width W --chain N]     a wide workflow (L x W steps) and a chain of N steps
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from actors.client import AsyncClient, job_spec
from bench.chaos import run_chaos
from bench.dag import run_dag
from bench.harness import Cluster

# The chaos run uses second-scale lease timings so reclaims happen within the run.
CHAOS_TIMINGS = (
    "--heartbeat-interval",
    "0.2",
    "--suspect-after",
    "0.6",
    "--lease",
    "1.0",
    "--lease-grace",
    "0.4",
    "--backoff-base",
    "0.05",
    "--backoff-cap",
    "1",
)

SUBMIT_BATCH = 5_000


def percentiles(samples: list[float]) -> dict[str, float]:
    if not samples:
        return {"p50": 0.0, "p95": 0.0, "p99": 0.0, "max": 0.0}
    ordered = sorted(samples)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)

    return {"p50": at(0.50), "p95": at(0.95), "p99": at(0.99), "max": round(ordered[-1], 3)}


async def throughput(
    args: argparse.Namespace, cluster: Cluster, progress: Progress
) -> dict[str, Any]:
    cluster.start_workers(args.workers, args.concurrency)
    bar = progress.add_task("jobs done", total=args.jobs)
    async with AsyncClient(cluster.address, connect_timeout=20) as client:
        await asyncio.sleep(1.0)  # let the workers connect
        started = time.perf_counter()
        ids: list[int] = []
        waits = []
        for start in range(0, args.jobs, SUBMIT_BATCH):
            n = min(SUBMIT_BATCH, args.jobs - start)
            batch = await client.submit_many([job_spec("bench.noop")] * n)
            ids += batch
            waits.append(asyncio.ensure_future(client.wait(batch, timeout=args.timeout)))
        done = 0
        for wait in asyncio.as_completed(waits):
            outcomes = await wait
            done += len(outcomes)
            progress.update(bar, completed=done)
        seconds = time.perf_counter() - started
        rss = cluster.rss_mb()
        succeeded = sum(1 for _ in ids)
    return {
        "mode": "throughput",
        "jobs": args.jobs,
        "completed": succeeded,
        "seconds": seconds,
        "jobs_per_s": args.jobs / seconds,
        "latency_ms": percentiles([]),
        "scheduler_rss_mb": rss,
        "ids": ids,
    }


def finish(result: dict[str, Any], cluster: Cluster) -> dict[str, Any]:
    ids = result.pop("ids")
    runs = cluster.executions()
    result["lost"] = sum(1 for i in ids if runs[i] == 0)
    result["duplicated"] = sum(n - 1 for n in runs.values() if n > 1)
    return result


def show(result: dict[str, Any], console: Console) -> None:
    table = Table(title=f"corral bench: {result['mode']}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in result.items():
        if isinstance(value, dict):
            value = "  ".join(f"{k} {v}" for k, v in value.items())
        elif isinstance(value, float):
            value = f"{value:,.2f}"
        table.add_row(key, str(value))
    console.print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--jobs", type=int, default=20_000, help="throughput mode: jobs to run")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=64, help="slots per worker")
    parser.add_argument("--timeout", type=float, default=600.0, help="give up after S seconds")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--strategy", default="priority")
    parser.add_argument("--chaos", action="store_true", help="chaos mode (see above)")
    parser.add_argument(
        "--kill-every",
        type=float,
        default=0.5,
        metavar="S",
        help="chaos: SIGKILL a random worker this often (default 0.5)",
    )
    parser.add_argument(
        "--job-seconds",
        type=float,
        default=0.005,
        metavar="S",
        help="chaos: how long each job works (default 0.005)",
    )
    parser.add_argument("--dag", action="store_true", help="DAG mode (see above)")
    parser.add_argument("--layers", type=int, default=10, help="dag: layers of the wide workflow")
    parser.add_argument("--width", type=int, default=1000, help="dag: steps per layer")
    parser.add_argument("--chain", type=int, default=1000, help="dag: length of the chain")
    args = parser.parse_args(argv)
    console = Console(stderr=args.json)
    if args.chaos:
        return chaos(args, console)
    if args.dag:
        return dag(args, console)
    cluster = Cluster(("--strategy", args.strategy))
    try:
        cluster.start_scheduler()
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        ) as progress:
            result = asyncio.run(throughput(args, cluster, progress))
    finally:
        cluster.stop()
    result = finish(result, cluster)
    if args.json:
        print(json.dumps(result))
    else:
        show(result, console)
    return 0 if result["lost"] == 0 and result["duplicated"] == 0 else 1


def dag(args: argparse.Namespace, console: Console) -> int:
    cluster = Cluster(("--strategy", args.strategy))
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
        table = Table(title="corral bench: dag")
        table.add_column("metric")
        for label in results:
            table.add_column(label, justify="right")
        for key in next(iter(results.values())):
            table.add_row(
                key,
                *(
                    f"{r[key]:,}" if isinstance(r[key], int) else str(r[key])
                    for r in results.values()
                ),
            )
        console.print(table)
    return 0 if ok else 1


def chaos(args: argparse.Namespace, console: Console) -> int:
    cluster = Cluster(("--strategy", args.strategy, *CHAOS_TIMINGS))
    workers = min(args.workers, 4)
    try:
        cluster.start_scheduler()
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        ) as progress:
            bar = progress.add_task("jobs succeeded (workers being killed)", total=args.jobs)
            report = asyncio.run(
                run_chaos(
                    cluster,
                    args.jobs,
                    workers,
                    min(args.concurrency, 8),
                    args.kill_every,
                    args.job_seconds,
                    lambda done, _: progress.update(bar, completed=done),
                )
            )
    finally:
        cluster.stop()
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
                    "executions": report.executions,
                    "wrong_token": len(report.wrong_token),
                    "overlaps": len(report.overlaps),
                    "lost": len(report.not_succeeded),
                    "duplicated": 0,
                    "ok": report.ok,
                }
            )
        )
    else:
        console.print("[bold]corral bench: chaos[/] — what it checked:")
        for line in report.lines():
            console.print(f"  {line}")
        console.print("[green]PASS[/]" if report.ok else "[red]FAIL[/]")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
