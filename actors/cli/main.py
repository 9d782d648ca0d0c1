"""The ``corral`` command line: the parser and the long-running commands (worker, demo).
The scheduler and the DAG resolver are in ``servers``, submission in ``submit``,
inspection and control in ``inspection``.

Every command has ``--help``. Errors print one line naming what was wrong and
what to do, and exit non-zero; a traceback means a bug in corral.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

import msgspec

from actors.addresses import parse as parse_addresses
from actors.cli.backup import add_backup_parser
from actors.cli.common import (
    EXIT_FAILED,
    EXIT_USAGE,
    MAX_SLOTS,
    Handler,
    Later,
    Parser,
    fail,
    id_arg,
    list_limit,
    positive_float,
    positive_int,
    prefetch_count,
    run_async,
    slot_count,
    when_arg,
)
from actors.cli.limit import add_limit_parser
from actors.cli.output import quiet_on_closed_stdout
from actors.cli.schedule import add_schedule_parser
from actors.cli.server_flags import LONG_RUNNING, add_log_flags, add_scheduler_commands
from actors.cli.submit import add_submit_parser
from actors.config import DEFAULT_ADDRESS, LogConfig, env_address
from actors.errors import ConfigError, CorralError, PoolStartFailed
from actors.logs import setup_logging

CONNECT_SETTING = "--connect / CORRAL_CONNECT / CORRAL_ADDRESS"

# ------------------------------------------------------------------- worker


def cmd_worker(args: argparse.Namespace) -> None:
    from actors.cli.fields import worker_problem
    from actors.cli.open_files import raise_open_files
    from actors.keys import client_keys
    from actors.worker.agent import REGISTRY, Worker, serve

    if args.concurrency + args.prefetch > MAX_SLOTS:
        fail(f"--concurrency plus --prefetch must be at most {MAX_SLOTS}")
    queues = tuple(q.strip() for q in args.queues.split(",") if q.strip())
    refused = worker_problem(args.name, list(queues))
    if refused is not None:  # its hello would be refused again and again: say it now
        print(f"corral: error: {refused}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)
    sys.path.insert(0, os.getcwd())
    try:
        importlib.import_module(args.module)
    except ImportError as exc:
        fail(
            f"cannot import task module {args.module!r}: {exc} (run from the directory that "
            "contains it, or set PYTHONPATH)"
        )
    except Exception as exc:  # the module's own code failed: its traceback is the clue
        import traceback

        traceback.print_exc()
        fail(f"task module {args.module!r} raised {exc!r} while importing (traceback above)")
    if not REGISTRY:
        fail(
            f"module {args.module!r} registers no tasks; decorate functions with "
            "@task (from actors import task)"
        )
    keys = client_keys(args.key, args.server_key)
    raise_open_files()  # its tasks' files, and the scheduler connections of several addresses
    worker = Worker(
        args.connect,
        name=args.name,
        concurrency=args.concurrency,
        prefetch=args.prefetch,
        queues=queues,
        pool=args.pool,
        modules=[args.module],
        drain_timeout=args.drain_timeout,
        keys=keys,
    )
    print(
        f"corral worker {worker.name}: {args.concurrency} slot(s)"
        + (f" + {args.prefetch} prefetched" if args.prefetch else "")
        + f", queues {','.join(queues)}, "
        f"{args.pool} pool, tasks {', '.join(sorted(REGISTRY))}",
        flush=True,
    )
    try:
        run_async(serve(worker))
    except PoolStartFailed as exc:
        fail(f"{exc}: check that {args.module!r} imports in a fresh process, or use --pool thread")
    if worker.abandoned or worker.link.refused:  # stopped unfinished, or never served
        raise SystemExit(EXIT_FAILED)


# ------------------------------------------------------------------- submit


# ------------------------------------------------------------------- status


# ------------------------------------------------------- cancel, jobs, dlq


# --------------------------------------------------------------------- demo


def cmd_keygen(args: argparse.Namespace) -> None:
    from actors.keys import keygen

    public, secret = keygen(args.name, Path(args.dir))
    print(f"public key {public} (for the scheduler's workers/, clients/ or admins/ folder)")
    print(f"secret key {secret} (keep it on this host only)")


def cmd_demo(args: argparse.Namespace) -> None:
    from actors.cli.demo import run_demo

    raise SystemExit(run_demo(workers=args.workers, keep=args.keep))


# --------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="corral", description="corral: a distributed job scheduler that never double-bills."
    )
    add_log_flags(parser, top=True)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    def add(name: str, fn: Handler, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(fn=fn)
        return p

    def connect_flag(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--connect",
            default=env_address(),
            metavar="ADDR",
            help="scheduler address, or several separated by commas (one leads, the others "
            f"stand by: the leader is followed); env CORRAL_CONNECT or CORRAL_ADDRESS; default "
            f"{DEFAULT_ADDRESS}",
        )
        p.add_argument(
            "--key",
            default=os.environ.get("CORRAL_KEY", ""),
            metavar="FILE",
            help="CURVE: this process's NAME.key_secret (`corral keygen`), with --server-key; "
            "env CORRAL_KEY",
        )
        p.add_argument(
            "--server-key",
            default=os.environ.get("CORRAL_SERVER_KEY", ""),
            metavar="FILE",
            help="CURVE: the scheduler's public scheduler.key; env CORRAL_SERVER_KEY",
        )

    def inspect(name: str) -> Handler:
        return Later("actors.cli.inspection", name)

    add_scheduler_commands(add)

    p = add("worker", cmd_worker, "run a worker agent for the tasks in MODULE")
    p.add_argument(
        "module", metavar="MODULE", help="importable module that registers @task functions"
    )
    connect_flag(p)
    p.add_argument(
        "--concurrency",
        type=slot_count,
        default=4,
        metavar="N",
        help="jobs run at once (slots; default 4)",
    )
    p.add_argument(
        "--prefetch",
        type=prefetch_count,
        default=0,
        metavar="N",
        help="hold up to N more jobs than the slots, each started as soon as a slot frees "
        "(default 0: for short jobs; a waiting job cannot go to an idle worker meanwhile)",
    )
    p.add_argument("--name", default=None, help="worker name (default HOST-PID)")
    p.add_argument(
        "--queues", default="default", metavar="Q1,Q2", help="queues served (default: default)"
    )
    p.add_argument(
        "--pool",
        choices=["thread", "process"],
        default="process",
        help="run sync tasks in one child process per slot (default: a stopped, timed-out "
        "or self-fenced task is killed at once, and CPU-bound or GIL-holding tasks cannot "
        "starve the worker's heartbeats) or in threads (lighter; a task stuck in a C call "
        "cannot be stopped until the call returns). Async tasks always run on the event loop",
    )
    p.add_argument(
        "--drain-timeout",
        type=positive_float,
        default=30.0,
        metavar="S",
        help="on SIGINT/SIGTERM, finish held jobs for at most S seconds, then stop them "
        "(default 30); a second signal stops them at once. Exits 1 if jobs were stopped",
    )

    add_submit_parser(add, connect_flag)

    p = add(
        "status",
        inspect("cmd_status"),
        "live view: jobs by state, queues, workers' health, progress",
    )
    p.add_argument("--once", action="store_true", help="print one snapshot and exit")
    p.add_argument("--json", action="store_true", help="one snapshot as JSON (format in README)")
    p.add_argument(
        "--interval",
        type=positive_float,
        default=1.0,
        metavar="S",
        help="seconds between refreshes of the live view (default 1)",
    )
    connect_flag(p)

    p = add(
        "workers", inspect("cmd_workers"), "connected workers: health, slots, queues, running jobs"
    )
    p.add_argument("--json", action="store_true", help="machine-readable JSON")
    connect_flag(p)

    p = add("jobs", inspect("cmd_jobs"), "jobs, newest first, optionally by state and queue")
    p.add_argument(
        "--state",
        default=None,
        type=str.upper,
        choices=[
            "PENDING",
            "QUEUED",
            "RUNNING",
            "SUCCEEDED",
            "FAILED",
            "CANCELLED",
            "UPSTREAM_FAILED",
        ],
        help="only jobs in this state",
    )
    p.add_argument("--queue", default=None, metavar="Q", help="only jobs in this queue")
    p.add_argument("--task", default=None, metavar="TASK", help="only jobs of this task")
    p.add_argument(
        "--idempotency-key",
        default=None,
        metavar="KEY",
        help="only the job with this idempotency key",
    )
    p.add_argument(
        "--since",
        type=when_arg,
        default=None,
        metavar="WHEN",
        help="only jobs created at or after WHEN: a time (2026-12-01T09:00Z) or how long ago (1h)",
    )
    p.add_argument(
        "--until", type=when_arg, default=None, metavar="WHEN", help="only jobs created before WHEN"
    )
    p.add_argument(
        "--before", type=id_arg, default=None, metavar="ID", help="only ids below ID (next page)"
    )
    p.add_argument("--limit", type=list_limit, default=50, metavar="N", help="at most N (50)")
    p.add_argument("--json", action="store_true", help="machine-readable JSON")
    connect_flag(p)

    p = add(
        "watch", inspect("cmd_watch"), "stream events as they are committed (all, or one job's)"
    )
    p.add_argument(
        "job",
        nargs="?",
        type=id_arg,
        default=None,
        metavar="JOB_ID",
        help="only this job's events; exits when it ends",
    )
    p.add_argument("--json", action="store_true", help="one JSON array per event")
    connect_flag(p)

    p = add(
        "cancel",
        inspect("cmd_cancel"),
        "cancel jobs: pending ones never run, running ones are stopped",
    )
    p.add_argument("ids", type=id_arg, nargs="+", metavar="ID")
    connect_flag(p)

    p = add("job", inspect("cmd_job"), "one job: its state, result or error, and every attempt")
    p.add_argument("id", type=id_arg, metavar="ID")
    p.add_argument("--json", action="store_true", help="machine-readable JSON")
    connect_flag(p)

    p = add("dlq", inspect("cmd_dlq"), "the dead-letter queue: jobs that ended FAILED")
    dlq = p.add_subparsers(dest="dlq_command", required=True, parser_class=Parser)
    q = dlq.add_parser("list", help="FAILED jobs, newest first")
    q.add_argument("--limit", type=list_limit, default=100, metavar="N")
    q.add_argument("--queue", default=None, metavar="Q")
    q.add_argument("--json", action="store_true", help="machine-readable JSON")
    connect_flag(q)
    q = dlq.add_parser("show", help="one FAILED job with every attempt's error")
    q.add_argument("id", type=id_arg, metavar="ID")
    q.add_argument("--json", action="store_true", help="machine-readable JSON")
    connect_flag(q)
    q = dlq.add_parser("requeue", help="run FAILED jobs again, with their retries renewed")
    q.add_argument("ids", type=id_arg, nargs="*", metavar="ID")
    q.add_argument("--all", action="store_true", help="every FAILED job")
    connect_flag(q)

    p = add(
        "dag", inspect("cmd_dag"), "a workflow's steps with their states, or exported for rendering"
    )
    p.add_argument("id", type=id_arg, metavar="WORKFLOW_ID")
    p.add_argument(
        "--format",
        choices=["table", "mermaid", "dot", "json"],
        default="table",
        help="table (default), a Mermaid flowchart, Graphviz dot, or JSON",
    )
    connect_flag(p)

    add_schedule_parser(add, connect_flag, Parser)
    add_backup_parser(add)

    p = add("keygen", cmd_keygen, "write a CURVE key pair: DIR/NAME.key and DIR/NAME.key_secret")
    p.add_argument("name", metavar="NAME", help="the key's name: scheduler, or a worker's")
    p.add_argument("--dir", default=".", metavar="DIR", help="where to write it (default .)")

    add_limit_parser(add, connect_flag, Parser)

    p = add(
        "demo", cmd_demo, "run a scheduler, workers and a sample workload, printing what happens"
    )
    p.add_argument("--workers", type=positive_int, default=3, help="worker processes (default 3)")
    p.add_argument("--keep", action="store_true", help="keep the demo's SQLite file")
    for name in LONG_RUNNING:
        add_log_flags(sub.choices[name], top=False)
    return parser


def setup_logs(args: argparse.Namespace) -> None:
    """Logging from --log-level/--log-format (before or after the command) or CORRAL_LOG_*;
    exported to the environment so processes this one starts (the demo's) log alike."""
    config = LogConfig.from_env(log_level=args.log_level, log_format=args.log_format)
    os.environ["CORRAL_LOG_LEVEL"] = config.log_level
    os.environ["CORRAL_LOG_FORMAT"] = config.log_format
    setup_logging(config.log_level, config.log_format)


def check_connect(args: argparse.Namespace) -> None:
    """Every --connect address is one a worker or client can use (ConfigError otherwise),
    before anything starts; kept as given, comma-separated."""
    if isinstance(getattr(args, "connect", None), str):
        args.connect = ",".join(parse_addresses(args.connect, CONNECT_SETTING))


def loaded(module: str, name: str) -> tuple[type[BaseException], ...]:
    """The exception class ``name`` of ``module`` if that module was imported, else none:
    an error of a module the command never imported cannot have been raised, and the
    parser stays light (``except`` evaluates its classes only when an exception arrives)."""
    found = getattr(sys.modules.get(module), name, None)
    return (found,) if isinstance(found, type) and issubclass(found, BaseException) else ()


def reported() -> tuple[type[BaseException], ...]:
    """Errors reported in one line (exit 1): corral's, the transport's, a wire value's."""
    return (CorralError, *loaded("transport.errors", "TransportError"), msgspec.ValidationError)


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        check_connect(args)
        setup_logs(args)
        # Every command, the long-running ones too: a closed stdout ends it quietly (141).
        quiet_on_closed_stdout(args.fn)(args)
    except ConfigError as exc:
        print(f"corral: error: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from None
    except reported() as exc:
        fail(str(exc))
    except loaded("sqlite3", "Error") as exc:
        fail(f"database problem: {exc} (check --db / CORRAL_DB)")
    except KeyboardInterrupt:
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
