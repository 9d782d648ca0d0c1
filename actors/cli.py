"""The ``corral`` command line: scheduler, worker, submit, status, demo.

Every command has ``--help``. Errors print one line naming what was wrong and
what to do, and exit non-zero; a traceback means a bug in corral.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import logging
import os
import sqlite3
import sys
from collections.abc import Callable, Coroutine
from typing import Any, NoReturn

import msgspec

from actors.config import DEFAULT_ADDRESS, DEFAULT_DB, SchedulerConfig, env_address
from actors.errors import CorralError
from transport.errors import TransportError

EXIT_FAILED = 1  # the command ran and the thing it reports failed (a job failed, an error)
EXIT_USAGE = 2  # the command line itself was wrong


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _fail(message: str) -> NoReturn:
    print(f"corral: error: {message}", file=sys.stderr)
    raise SystemExit(EXIT_FAILED)


def run_async(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run on uvloop when it is installed (it is a dependency on Linux and macOS)."""
    try:
        import uvloop

        return uvloop.run(coro)
    except ImportError:  # pragma: no cover - platforms without uvloop
        return asyncio.run(coro)


# ---------------------------------------------------------------- scheduler


def cmd_scheduler(args: argparse.Namespace) -> None:
    from actors.brain import Brain

    config = SchedulerConfig.from_env(
        bind=args.bind,
        db=args.db,
        strategy=args.strategy,
        durability=args.durability,
        heartbeat_interval=args.heartbeat_interval,
        suspect_after=args.suspect_after,
        lease=args.lease,
        lease_grace=args.lease_grace,
        backoff_base=args.backoff_base,
        backoff_factor=args.backoff_factor,
        backoff_cap=args.backoff_cap,
    )

    async def serve() -> None:
        import signal

        brain = Brain(config)
        await brain.start()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, brain.stop)
        print(
            f"corral scheduler on {brain.address} (db {config.db}, strategy {config.strategy})",
            flush=True,
        )
        await brain.run()

    run_async(serve())


# ------------------------------------------------------------------- worker


def cmd_worker(args: argparse.Namespace) -> None:
    from actors.worker import REGISTRY, Worker, serve

    sys.path.insert(0, os.getcwd())
    try:
        importlib.import_module(args.module)
    except ImportError as exc:
        _fail(
            f"cannot import task module {args.module!r}: {exc} (run from the directory that "
            "contains it, or set PYTHONPATH)"
        )
    if not REGISTRY:
        _fail(
            f"module {args.module!r} registers no tasks; decorate functions with "
            "@task from actors.worker"
        )
    queues = tuple(q.strip() for q in args.queues.split(",") if q.strip())
    worker = Worker(
        args.connect,
        name=args.name,
        concurrency=args.concurrency,
        queues=queues,
        pool=args.pool,
        modules=[args.module],
    )
    print(
        f"corral worker {worker.name}: {args.concurrency} slot(s), queues {','.join(queues)}, "
        f"tasks {', '.join(sorted(REGISTRY))}",
        flush=True,
    )
    run_async(serve(worker))


# ------------------------------------------------------------------- submit


def _spec_from_fields(fields: dict[str, Any], where: str) -> Any:
    from actors.client import job_spec
    from transport import protocol as wire

    allowed = {
        "task",
        "args",
        "kwargs",
        "priority",
        "queue",
        "depends_on",
        "max_retries",
        "idempotency_key",
        "timeout",
        "backoff",
    }
    unknown = set(fields) - allowed
    if unknown:
        names = ", ".join(sorted(unknown))
        _fail(f"{where}: unknown field(s) {names}; allowed: {', '.join(sorted(allowed))}")
    if not isinstance(fields.get("task"), str):
        _fail(f"{where}: 'task' (a string) is required")
    if not isinstance(fields.get("args", []), list):
        _fail(f"{where}: 'args' must be a JSON array")
    if not isinstance(fields.get("kwargs", {}), dict):
        _fail(f"{where}: 'kwargs' must be a JSON object")
    options = {k: v for k, v in fields.items() if k not in ("task", "args", "kwargs")}
    backoff = options.get("backoff")
    if isinstance(backoff, dict):
        try:
            options["backoff"] = msgspec.convert(backoff, wire.Backoff)
        except msgspec.ValidationError as exc:
            _fail(f"{where}: backoff: {exc} (expected {{'base': S, 'factor': F, 'cap': S}})")
    elif backoff is not None and not isinstance(backoff, list | tuple):
        _fail(f"{where}: backoff must be [base, factor, cap] or {{'base', 'factor', 'cap'}}")
    try:
        spec = job_spec(fields["task"], fields.get("args", []), fields.get("kwargs"), **options)
        # Run the protocol's own validation now, for a local, precise message.
        msgspec.msgpack.decode(msgspec.msgpack.encode(spec), type=type(spec))
    except (TypeError, msgspec.ValidationError) as exc:
        _fail(f"{where}: {exc}")
    return spec


def _specs_from_args(args: argparse.Namespace) -> list[Any]:
    if args.file is not None:
        if args.task is not None:
            _fail("give either TASK or --file, not both")
        try:
            with open(args.file, encoding="utf-8") as f:
                lines = f.read().splitlines()
        except OSError as exc:
            _fail(f"cannot read {args.file}: {exc.strerror}")
        specs = []
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                line_fields = json.loads(line)
            except json.JSONDecodeError as exc:
                _fail(f"{args.file}:{number}: not valid JSON: {exc.msg}")
            if not isinstance(line_fields, dict):
                _fail(f"{args.file}:{number}: each line must be a JSON object")
            specs.append(_spec_from_fields(line_fields, f"{args.file}:{number}"))
        if not specs:
            _fail(f"{args.file} holds no jobs")
        return specs
    if args.task is None:
        _fail("name a TASK to run, or pass --file FILE")
    fields: dict[str, Any] = {"task": args.task}
    if args.args_json is not None:
        try:
            value = json.loads(args.args_json)
        except json.JSONDecodeError as exc:
            _fail(f"ARGS_JSON is not valid JSON: {exc.msg} (example: '[1, 2]' or '{{\"x\": 1}}')")
        if isinstance(value, list):
            fields["args"] = value
        elif isinstance(value, dict):
            fields["kwargs"] = value
        else:
            _fail("ARGS_JSON must be a JSON array (positional args) or object (keyword args)")
    for name in ("priority", "queue", "max_retries", "idempotency_key", "timeout", "backoff"):
        if getattr(args, name) is not None:
            fields[name] = getattr(args, name)
    if args.depends_on:
        fields["depends_on"] = args.depends_on
    return [_spec_from_fields(fields, "job")]


def cmd_submit(args: argparse.Namespace) -> None:
    from actors.client import AsyncClient
    from transport import protocol as wire

    specs = _specs_from_args(args)

    async def go() -> int:
        async with AsyncClient(args.connect) as client:
            ids = await client.submit_many(specs)
            if not args.wait:
                for job_id in ids:
                    print(job_id)
                return 0
            outcomes = await client.wait(ids, args.wait_timeout)
            failed = 0
            for job_id in ids:
                outcome = outcomes[job_id]
                if outcome.status == "SUCCEEDED":
                    print(
                        job_id, outcome.status, json.dumps(wire.unpack(outcome.result), default=str)
                    )
                else:
                    failed += 1
                    print(job_id, outcome.status)
                    print(f"job {job_id} ended {outcome.status}: {outcome.error}", file=sys.stderr)
            return EXIT_FAILED if failed else 0

    raise SystemExit(run_async(go()))


# ------------------------------------------------------------------- status


def cmd_status(args: argparse.Namespace) -> None:
    from actors.client import AsyncClient

    async def go() -> Any:
        async with AsyncClient(args.connect) as client:
            return await client.status()

    status = run_async(go())
    if args.json:
        _print_json(status)
        return
    from actors.views import render_status

    render_status(status)


# ------------------------------------------------------- cancel, jobs, dlq


def _with_client(args: argparse.Namespace, work: Callable[[Any], Coroutine[Any, Any, Any]]) -> Any:
    from actors.client import AsyncClient

    async def go() -> Any:
        async with AsyncClient(args.connect) as client:
            return await work(client)

    return run_async(go())


def cmd_cancel(args: argparse.Namespace) -> None:
    statuses = _with_client(args, lambda c: c.cancel(args.ids))
    missing = 0
    for job_id in args.ids:
        print(job_id, statuses[job_id])
        missing += statuses[job_id] == "NOT_FOUND"
    raise SystemExit(EXIT_FAILED if missing else 0)


def _print_json(value: Any) -> None:
    """JSON with user payloads (results) decoded from their msgpack form."""
    from transport import protocol as wire

    def decode_raw(obj: Any) -> Any:
        return wire.unpack(obj) if isinstance(obj, msgspec.Raw) else obj

    print(json.dumps(msgspec.to_builtins(value, enc_hook=decode_raw), indent=2, default=str))


def cmd_job(args: argparse.Namespace) -> None:
    from actors.views import render_job

    view = _with_client(args, lambda c: c.job(args.id))
    if view is None:
        _fail(f"no job {args.id}")
    if args.json:
        _print_json(view)
    else:
        render_job(view)


def cmd_dlq(args: argparse.Namespace) -> None:
    from actors.views import render_job, render_jobs

    if args.dlq_command == "list":
        views = _with_client(args, lambda c: c.jobs("FAILED", args.queue, args.limit))
        if args.json:
            _print_json(views)
        else:
            render_jobs(views, title=f"dead-letter queue: {len(views)} FAILED job(s) shown")
    elif args.dlq_command == "show":
        view = _with_client(args, lambda c: c.job(args.id))
        if view is None:
            _fail(f"no job {args.id}")
        if view.status != "FAILED":
            _fail(f"job {args.id} is {view.status}, not in the dead-letter queue (FAILED)")
        if args.json:
            _print_json(view)
        else:
            render_job(view)
    else:
        if not args.ids and not args.all:
            _fail("name job IDs to re-queue, or pass --all")
        reply = _with_client(args, lambda c: c.requeue(args.ids, all_failed=args.all))
        print(f"re-queued {len(reply.job_ids)} job(s)" +
              (": " + " ".join(map(str, reply.job_ids)) if reply.job_ids else ""))  # fmt: skip
        for job_id, why in reply.skipped:
            print(f"job {job_id} not re-queued: {why}", file=sys.stderr)
        raise SystemExit(EXIT_FAILED if reply.skipped and not reply.job_ids else 0)


# --------------------------------------------------------------------- demo


def cmd_demo(args: argparse.Namespace) -> None:
    from actors.demo import run_demo

    raise SystemExit(run_demo(workers=args.workers, keep=args.keep))


# --------------------------------------------------------------------- main


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    import strategies

    parser = _Parser(
        prog="corral", description="corral: a distributed job scheduler that never double-bills."
    )
    parser.add_argument(
        "--log-level",
        default=os.environ.get("CORRAL_LOG_LEVEL", "WARNING"),
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="logging verbosity",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def add(
        name: str, fn: Callable[[argparse.Namespace], None], help: str
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(fn=fn)
        return p

    def connect_flag(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--connect",
            default=env_address(),
            metavar="ADDR",
            help=f"scheduler address (env CORRAL_ADDRESS; default {DEFAULT_ADDRESS})",
        )

    p = add("scheduler", cmd_scheduler, "run the scheduler (the brain)")
    p.add_argument(
        "--bind",
        default=os.environ.get("CORRAL_BIND", DEFAULT_ADDRESS),
        metavar="ADDR",
        help=f"address to serve (tcp://, ipc://; env CORRAL_BIND; default {DEFAULT_ADDRESS})",
    )
    p.add_argument(
        "--db",
        default=os.environ.get("CORRAL_DB", DEFAULT_DB),
        metavar="PATH",
        help=f"SQLite file (env CORRAL_DB; default {DEFAULT_DB})",
    )
    p.add_argument(
        "--strategy",
        default=os.environ.get("CORRAL_STRATEGY", "priority"),
        choices=sorted(strategies.STRATEGIES),
        help="assignment strategy (default priority)",
    )
    p.add_argument(
        "--durability",
        choices=["normal", "full"],
        default=None,
        help="normal: commits survive kill -9 (default); full: also power loss (fsync)",
    )
    for flag, help in [
        ("--heartbeat-interval", "seconds between worker heartbeats (default 1)"),
        ("--suspect-after", "seconds of silence before a worker is suspect (default 3)"),
        ("--lease", "seconds a lease lasts without renewal (default 5)"),
        ("--lease-grace", "extra seconds before an expired lease is reclaimed (default 1)"),
        ("--backoff-base", "first retry delay in seconds (default 1)"),
        ("--backoff-factor", "retry delay multiplier (default 2)"),
        ("--backoff-cap", "longest retry delay in seconds (default 300)"),
    ]:
        p.add_argument(flag, type=_positive_float, default=None, metavar="S", help=help)

    p = add("worker", cmd_worker, "run a worker agent for the tasks in MODULE")
    p.add_argument(
        "module", metavar="MODULE", help="importable module that registers @task functions"
    )
    connect_flag(p)
    p.add_argument(
        "--concurrency",
        type=_positive_int,
        default=4,
        metavar="N",
        help="jobs run at once (slots; default 4)",
    )
    p.add_argument("--name", default=None, help="worker name (default HOST-PID)")
    p.add_argument(
        "--queues", default="default", metavar="Q1,Q2", help="queues served (default: default)"
    )
    p.add_argument("--pool", choices=["thread", "process"], default="thread",
                   help="run sync tasks in threads (default) or in one child process per slot "
                   "(for CPU-bound tasks; a stopped task is killed at once)")  # fmt: skip

    p = add("submit", cmd_submit, "submit a job (or a file of jobs) and print the id(s)")
    p.add_argument("task", nargs="?", metavar="TASK", help="registered task name, e.g. tasks.add")
    p.add_argument(
        "args_json",
        nargs="?",
        metavar="ARGS_JSON",
        help="JSON array of positional args, or JSON object of keyword args",
    )
    p.add_argument("--file", metavar="FILE", help="JSON lines, one job per line, same fields")
    p.add_argument("--priority", type=int, default=None, help="higher runs first (default 0)")
    p.add_argument("--queue", default=None, help="queue name (default: default)")
    p.add_argument(
        "--depends-on",
        type=_positive_int,
        nargs="+",
        metavar="ID",
        default=[],
        help="run only after these jobs succeeded",
    )
    p.add_argument(
        "--max-retries",
        type=int,
        default=None,
        metavar="N",
        help="retries after a failure (default 3)",
    )
    p.add_argument(
        "--idempotency-key",
        default=None,
        metavar="K",
        help="submitting K again returns the same job",
    )
    p.add_argument(
        "--timeout", type=_positive_float, default=None, metavar="S", help="per-attempt time limit"
    )
    p.add_argument("--backoff", type=_positive_float, nargs=3, default=None,
                   metavar=("BASE", "FACTOR", "CAP"),
                   help="retry delays for this job: BASE*FACTOR^(n-1) capped at CAP seconds, "
                   "with jitter (default: the scheduler's)")  # fmt: skip
    p.add_argument(
        "--wait", action="store_true", help="wait and print each job's outcome and result"
    )
    p.add_argument(
        "--wait-timeout",
        type=_positive_float,
        default=None,
        metavar="S",
        help="give up waiting after S seconds",
    )
    connect_flag(p)

    p = add("status", cmd_status, "jobs by state and workers with their slots")
    p.add_argument("--json", action="store_true", help="machine-readable JSON")
    connect_flag(p)

    p = add("cancel", cmd_cancel, "cancel jobs: pending ones never run, running ones are stopped")
    p.add_argument("ids", type=_positive_int, nargs="+", metavar="ID")
    connect_flag(p)

    p = add("job", cmd_job, "one job: its state, result or error, and every attempt")
    p.add_argument("id", type=_positive_int, metavar="ID")
    p.add_argument("--json", action="store_true", help="machine-readable JSON")
    connect_flag(p)

    p = add("dlq", cmd_dlq, "the dead-letter queue: jobs that ended FAILED")
    dlq = p.add_subparsers(dest="dlq_command", required=True, parser_class=_Parser)
    q = dlq.add_parser("list", help="FAILED jobs, newest first")
    q.add_argument("--limit", type=_positive_int, default=100, metavar="N")
    q.add_argument("--queue", default=None, metavar="Q")
    q.add_argument("--json", action="store_true", help="machine-readable JSON")
    connect_flag(q)
    q = dlq.add_parser("show", help="one FAILED job with every attempt's error")
    q.add_argument("id", type=_positive_int, metavar="ID")
    q.add_argument("--json", action="store_true", help="machine-readable JSON")
    connect_flag(q)
    q = dlq.add_parser("requeue", help="run FAILED jobs again, with their retries renewed")
    q.add_argument("ids", type=_positive_int, nargs="*", metavar="ID")
    q.add_argument("--all", action="store_true", help="every FAILED job")
    connect_flag(q)

    p = add(
        "demo", cmd_demo, "run a scheduler, workers and a sample workload, printing what happens"
    )
    p.add_argument("--workers", type=_positive_int, default=3, help="worker processes (default 3)")
    p.add_argument("--keep", action="store_true", help="keep the demo's SQLite file")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        args.fn(args)
    except (CorralError, TransportError, msgspec.ValidationError) as exc:
        _fail(str(exc))
    except sqlite3.Error as exc:
        _fail(f"database problem: {exc} (check --db / CORRAL_DB)")
    except KeyboardInterrupt:
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
