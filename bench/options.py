"""The command line of ``python -m bench``: every mode's flags, and their defaults."""

from __future__ import annotations

import argparse


def parser(description: str) -> argparse.ArgumentParser:
    """The parser of ``python -m bench`` (``description``: the usage text it prints)."""
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--jobs", type=int, default=20_000, help="jobs to run (default 20,000)")
    parser.add_argument("--workers", type=int, default=4, help="worker processes (default 4)")
    parser.add_argument("--concurrency", type=int, default=64, help="slots per worker (64)")
    parser.add_argument(
        "--prefetch",
        type=int,
        default=0,
        metavar="P",
        help="jobs each worker holds beyond its slots (corral worker --prefetch; default 0)",
    )
    parser.add_argument(
        "--job-ms",
        type=float,
        default=0.0,
        metavar="MS",
        help="throughput: each job awaits MS milliseconds (bench.nap) instead of none",
    )
    parser.add_argument("--strategy", default="priority")
    parser.add_argument(
        "--db",
        metavar="DSN",
        help="the scheduler's database: a postgresql:// DSN of an empty database "
        "(default: a fresh SQLite file per run)",
    )
    parser.add_argument("--timeout", type=float, default=1200.0, help="give up after S seconds")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--status-every",
        type=float,
        default=0.0,
        metavar="S",
        help="throughput: also request status every S seconds",
    )
    parser.add_argument("--rate", type=float, help="steady-rate mode: jobs per second")
    parser.add_argument("--duration", type=float, default=10.0, help="steady rate: seconds")
    parser.add_argument("--backlog", type=int, metavar="N", help="backlog mode: jobs to enqueue")
    parser.add_argument("--scale", metavar="W1,W2,...", help="scaling mode: worker counts")
    parser.add_argument("--chaos", action="store_true", help="chaos mode (see above)")
    parser.add_argument(
        "--kill-every",
        type=float,
        default=2.0,
        metavar="S",
        help="chaos: SIGKILL a random worker this often (default 2; 0: never)",
    )
    parser.add_argument(
        "--pause-every",
        type=float,
        default=2.5,
        metavar="S",
        help="chaos: SIGSTOP a random worker this often (default 2.5; 0: never)",
    )
    parser.add_argument(
        "--pause-seconds",
        type=float,
        default=3.0,
        metavar="S",
        help="chaos: how long a paused worker stays stopped (default 3, past lease + grace)",
    )
    parser.add_argument(
        "--long-every",
        type=int,
        default=50,
        metavar="N",
        help="chaos: one job in N works 3 s, so pauses catch jobs mid-flight (0: none)",
    )
    parser.add_argument(
        "--pool",
        choices=["process", "thread"],
        default="process",
        help="chaos: the workers' pool for its sync jobs (default process, the workers' own)",
    )
    parser.add_argument(
        "--restart-every",
        type=float,
        default=5.0,
        metavar="S",
        help="chaos: SIGKILL and restart the scheduler this often (default 5; 0: never)",
    )
    parser.add_argument(
        "--job-seconds",
        type=float,
        default=0.005,
        metavar="S",
        help="chaos: how long each job works (default 0.005)",
    )
    parser.add_argument(
        "--schedulers",
        type=int,
        default=1,
        metavar="N",
        help="chaos on PostgreSQL: N schedulers on the --db database, one leading",
    )
    parser.add_argument(
        "--kill-leader-every",
        type=float,
        default=0.0,
        metavar="S",
        help="chaos with --schedulers N: SIGKILL the leader this often, then restart it",
    )
    parser.add_argument("--dag", action="store_true", help="DAG mode (see above)")
    parser.add_argument("--inproc", action="store_true", help="in-process mode (see above)")
    parser.add_argument("--floor", action="store_true", help="transport floor (see above)")
    parser.add_argument("--ceiling", action="store_true", help="stripped pipeline (see above)")
    parser.add_argument(
        "--with-ceiling", action="store_true", help="throughput: the ceiling's figure beside"
    )
    parser.add_argument(
        "--curve",
        action="store_true",
        help="throughput, --rate or --floor without and with CURVE keys (bench/curve.py)",
    )
    parser.add_argument("--rounds", type=int, default=6, help="--curve: interleaved rounds (6)")
    parser.add_argument("--fuzz", action="store_true", help="fuzz mode (see above)")
    parser.add_argument("--frames", type=int, default=100_000, help="--fuzz: frames (100,000)")
    parser.add_argument("--seed", type=int, default=1, help="--fuzz: the generator's seed (1)")
    parser.add_argument("--peers", type=int, default=6, help="--fuzz: fuzzing sockets (6)")
    parser.add_argument("--layers", type=int, default=10, help="dag: layers of the wide workflow")
    parser.add_argument("--width", type=int, default=1000, help="dag: steps per layer")
    parser.add_argument("--chain", type=int, default=1000, help="dag: length of the chain")
    parser.add_argument("--delayed", action="store_true", help="delayed-jobs mode (see above)")
    parser.add_argument("--spacing", type=float, default=10.0, help="--delayed: ms apart (10)")
    parser.add_argument("--rate-limit", type=float, metavar="R", help="rate-limit mode: R/s")
    parser.add_argument("--retention", action="store_true", help="retention mode (see above)")
    parser.add_argument("--per-day", type=int, default=1_000_000, help="retention: jobs a day")
    parser.add_argument("--days", type=float, default=7.0, help="retention: days of history")
    parser.add_argument("--keep", default="1d", help="retention: what the purge keeps (1d)")
    return parser
