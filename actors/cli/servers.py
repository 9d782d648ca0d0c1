"""``corral scheduler`` and ``corral dag-resolver``: their flags and how they run, plus the
logging flags every long-running command takes.

Every scheduler flag is read as text and validated with its ``CORRAL_*`` variable in one
place (``SchedulerConfig.from_env``), so a bad flag and a bad variable get the same
one-line message and exit 2. A start-up or storage failure ends the process with one
line and exit 1, after releasing the database and the sockets. On PostgreSQL the process
leads or stands by (``actors.scheduler.node``): a lost term or a failed database makes a
leader stand by again, in-process, not exit. HTTP (``--http-port``, ``actors.http.server``)
is the process's, not a term's: started before anything else is opened, served while
standing by too, stopped last.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import sys
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

import msgspec

from actors.cli.common import run_async
from actors.cli.open_files import few_open_files, raise_open_files
from actors.config import (
    BACKOFF_BASE_S,
    BACKOFF_CAP_S,
    BACKOFF_FACTOR,
    DEFAULT_ADDRESS,
    DEFAULT_DB,
    DEFAULT_DURABILITY,
    DEFAULT_STRATEGY,
    HEARTBEAT_INTERVAL_S,
    LEADER_TTL_S,
    LEASE_GRACE_S,
    LEASE_S,
    SUSPECT_AFTER_S,
    SchedulerConfig,
    is_loopback,
    is_postgres,
)

if TYPE_CHECKING:
    from actors.http.settings import HttpSettings
    from actors.metrics import MetricsBoard
    from actors.scheduler.brain import Brain

# Commands that run until stopped and log while they do: they take the logging flags
# after their name too (`corral scheduler --log-level info`).
LONG_RUNNING = ("scheduler", "worker", "dag-resolver", "demo")

log = logging.getLogger("corral.scheduler")

Add = Callable[[str, Callable[[argparse.Namespace], None], str], argparse.ArgumentParser]

# (flag, help) for the timing settings; their defaults come from actors.config.
TIMINGS = (
    (
        "--heartbeat-interval",
        f"seconds between worker heartbeats (default {HEARTBEAT_INTERVAL_S:g})",
    ),
    (
        "--suspect-after",
        "seconds of silence before a worker is suspect; more than the heartbeat interval, "
        f"at most the lease (default {SUSPECT_AFTER_S:g})",
    ),
    (
        "--lease",
        "seconds a lease lasts without renewal; at least 2 heartbeat intervals "
        f"(default {LEASE_S:g})",
    ),
    (
        "--lease-grace",
        f"extra seconds before an expired lease is reclaimed, >= 0 (default {LEASE_GRACE_S:g})",
    ),
    ("--backoff-base", f"first retry delay in seconds (default {BACKOFF_BASE_S:g})"),
    ("--backoff-factor", f"retry delay multiplier, >= 1 (default {BACKOFF_FACTOR:g})"),
    ("--backoff-cap", f"longest retry delay in seconds (default {BACKOFF_CAP_S:g})"),
    (
        "--priority-aging",
        "priority strategy: a job ready this many seconds is promoted above every "
        "priority and served in arrival order, so higher-priority work holds it back at "
        "most this long (default 30)",
    ),
)

# (flag, metavar, help) for the per-client allowances (actors.scheduler.quotas).
QUOTAS = (
    (
        "--max-jobs-in-flight",
        "N",
        "jobs not finished one client key may have (all clients together without keys); "
        "beyond it a submission is refused, code quota (default 2000000)",
    ),
    (
        "--max-bytes-in-flight",
        "BYTES",
        "bytes of arguments those jobs may hold, per client key (default 1073741824)",
    ),
    (
        "--max-submit-rate",
        "JOBS_PER_S",
        "jobs one client key may submit per second, a burst of one second's worth (default 100000)",
    ),
    (
        "--max-waits",
        "N",
        "job outcomes one client key (one connection without keys) may wait for at once "
        "(default 1000000)",
    ),
    (
        "--max-subscriptions",
        "N",
        "event subscriptions one client key (one connection without keys) may hold (default 64)",
    ),
)


# (flag, metavar, help) for retention (actors.scheduler.retention).
RETENTION = (
    (
        "--retention",
        "DURATION",
        "delete SUCCEEDED, CANCELLED and UPSTREAM_FAILED jobs this long after they finished, "
        "with their history, and their idempotency keys with them (30s, 12h, 7d; off: keep "
        "forever; default 7d)",
    ),
    (
        "--failed-retention",
        "DURATION",
        "the same for FAILED jobs (dead letters) not re-queued (off: keep; default 30d)",
    ),
)


def add_log_flags(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """``--log-level`` and ``--log-format``. On the top parser they default to None; on a
    command they are left out of the namespace unless given (SUPPRESS), so the flag
    works before or after the command name and the later one wins."""
    default = None if top else argparse.SUPPRESS
    parser.add_argument(
        "--log-level",
        default=default,
        metavar="LEVEL",
        help="DEBUG, INFO, WARNING or ERROR, any case (env CORRAL_LOG_LEVEL; default WARNING)",
    )
    parser.add_argument(
        "--log-format",
        default=default,
        metavar="FORMAT",
        help="text, or json: one JSON object per line with time, level, logger, message "
        "and exc_info (env CORRAL_LOG_FORMAT; default text)",
    )


def add_scheduler_commands(add: Add) -> None:
    """The ``scheduler`` and ``dag-resolver`` subcommands."""
    import strategies

    p = add("scheduler", cmd_scheduler, "run the scheduler (the brain)")
    for flag, metavar, help in (
        ("--bind", "ADDR", f"address to serve (tcp://, ipc://; default {DEFAULT_ADDRESS})"),
        (
            "--db",
            "PATH|DSN",
            f"SQLite file (default {DEFAULT_DB}), or a PostgreSQL database: "
            "postgresql://USER[:PASSWORD]@HOST[:PORT]/DB",
        ),
        (
            "--strategy",
            "NAME",
            f"assignment strategy: {', '.join(sorted(strategies.STRATEGIES))} "
            f"(default {DEFAULT_STRATEGY})",
        ),
        (
            "--durability",
            "LEVEL",
            "full: every commit is fsynced and survives power loss; normal: commits "
            "survive kill -9 of the scheduler but the last ones may be lost on power "
            f"loss, faster; SQLite only: PostgreSQL commits with synchronous_commit on "
            f"(default {DEFAULT_DURABILITY})",
        ),
        (
            "--leader-ttl",
            "S",
            "PostgreSQL: seconds a leader's term lasts unless renewed (every quarter of "
            "it); a standby takes over about this long after the leader dies "
            f"(default {LEADER_TTL_S:g})",
        ),
        (
            "--advertise",
            "ADDR",
            "PostgreSQL: the address workers and clients reach this scheduler at, which "
            "the standbys tell them (default: --bind; needed when --bind is a wildcard)",
        ),
        (
            "--keys",
            "DIR",
            "CURVE: a folder with scheduler.key_secret and the public keys accepted, in "
            "workers/, clients/ and admins/ (see `corral keygen`); needed to serve an "
            "address other hosts can reach",
        ),
        (
            "--http-port",
            "PORT",
            "serve HTTP on this port from the scheduler's own loop: Prometheus metrics at "
            "/metrics (default: off)",
        ),
        (
            "--http-bind",
            "ADDR",
            "IP address for --http-port (default 127.0.0.1); any but loopback needs "
            "--http-token-file",
        ),
        (
            "--http-token-file",
            "FILE",
            "a file (chmod 600) holding one line, a token every HTTP request must carry "
            "(Authorization: Bearer TOKEN), on loopback too",
        ),
        ("--metrics-port", "PORT", "the older name of --http-port"),
        ("--metrics-addr", "ADDR", "the older name of --http-bind"),
        (
            "--dag-resolver",
            "ADDR",
            "use a DAG resolver running in its own process (`corral dag-resolver`)",
        ),
        (
            "--queue-weights",
            "Q=W,...",
            "shares of queues served by the same workers, e.g. heavy=1,light=3",
        ),
        *((flag, "S", help) for flag, help in TIMINGS),
        *QUOTAS,
        *RETENTION,
    ):
        env = "CORRAL_" + flag.removeprefix("--").replace("-", "_").upper()
        p.add_argument(flag, default=None, metavar=metavar, help=f"{help}; env {env}")

    p.add_argument(
        "--insecure",
        action="store_true",
        default=None,
        help="serve an address other hosts can reach without --keys: anyone who reaches it "
        "is trusted with everything (a warning says so); env CORRAL_INSECURE=1",
    )

    p = add(
        "dag-resolver",
        cmd_dag_resolver,
        "run the DAG resolver actor in its own process (for `scheduler --dag-resolver`)",
    )
    p.add_argument("--bind", required=True, metavar="ADDR", help="e.g. tcp://127.0.0.1:5556")


def scheduler_config(args: argparse.Namespace) -> SchedulerConfig:
    """Flags over CORRAL_* variables over defaults, validated (raises ConfigError)."""
    fields = [field.name for field in msgspec.structs.fields(SchedulerConfig)]
    return SchedulerConfig.from_env(**{name: getattr(args, name) for name in fields})


def cmd_scheduler(args: argparse.Namespace) -> None:
    from actors.http.settings import http_settings
    from actors.scheduler.brain import Brain

    config = scheduler_config(args)
    http = http_settings(config)  # ConfigError before anything is opened
    # The process serves HTTP (actors.http.server), across terms; the Brain serves none.
    config = msgspec.structs.replace(config, metrics_port=None)
    if config.insecure and not config.keys and not is_loopback(config.bind):
        print(
            f"corral scheduler: WARNING: serving {config.bind} without keys (--insecure): "
            "anyone who reaches it can act as a worker or a client",
            file=sys.stderr,
            flush=True,
        )
    few = few_open_files(raise_open_files(), "corral scheduler")
    if few:
        print(few, file=sys.stderr, flush=True)
    if is_postgres(config.db):
        run_async(serve_with_standbys(config, http))
        return

    async def serve() -> None:
        import signal

        brain = Brain(config)
        # A signal during start-up (the port may already be bound) stops it once started,
        # cleanly, instead of killing the process with the default action.
        loop = asyncio.get_running_loop()
        early = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, early.set)
        loop.add_signal_handler(signal.SIGHUP, reload_keys)  # not the default: exit
        async with serving_http(http, lambda: brain.system.board, lambda: brain):
            await serve_brain(brain, early)

    run_async(serve())


async def serve_brain(brain: Brain, early: asyncio.Event) -> None:
    """Start ``brain`` (on failure it has released everything it opened), serve until
    stopped (at once if ``early`` is set by then), close it."""
    import signal

    await brain.start()
    try:
        # Everything allocated so far lives as long as the process: move it out of the
        # cyclic GC's way, so full collections scan only what the work allocates.
        gc.freeze()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, brain.stop)
        if early.is_set():
            brain.stop()
        print(brain.summary(), flush=True)
        await brain.run()
    finally:
        await brain.close()


async def serve_with_standbys(config: SchedulerConfig, http: HttpSettings | None) -> None:
    """PostgreSQL: lead or stand by, as the election decides (actors.scheduler.node); HTTP
    is served throughout, with the metrics of the term led, none while standing by."""
    import signal

    from actors.scheduler.node import Node

    node = Node(config, lambda line: print(line, flush=True))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, node.stop)
    loop.add_signal_handler(signal.SIGHUP, reload_keys)
    async with serving_http(
        http,
        lambda: node.brain.system.board if node.brain else None,
        lambda: node.brain,
        lambda: node.leader(),
    ):
        await node.run()


@contextlib.asynccontextmanager
async def serving_http(
    settings: HttpSettings | None,
    board: Callable[[], MetricsBoard | None],
    brain: Callable[[], Brain | None] | None = None,
    leader: Callable[[], tuple[str, int]] = lambda: ("", 0),
) -> AsyncIterator[None]:
    """The HTTP server (none without a port) for as long as the block runs; started
    first, so a port in use ends the process (ConfigError, exit 2) before the database
    or the scheduler's address is opened. With ``brain`` (the current term's, None while
    standing by) it serves the dashboard too (``actors.http.pages``); ``leader`` is whom
    a standby's dashboard names."""
    if settings is None:
        yield
        return
    from actors.http.server import HttpServer

    server = HttpServer(settings, board)
    if brain is not None:
        from actors.http.pages import install

        install(server, brain, leader)
    await server.start()
    try:
        yield
    finally:
        await server.stop()


def reload_keys() -> None:
    """SIGHUP: read the key folders again now (they are also re-read when they change)."""
    from actors.keys import reload_all

    reload_all()
    log.info("SIGHUP: key folders read again")


def cmd_dag_resolver(args: argparse.Namespace) -> None:
    from actors.scheduler.dag import DagResolver
    from actors.scheduler.remote_host import host_actor

    raise_open_files()

    async def serve() -> None:
        import signal

        task = asyncio.ensure_future(host_actor(DagResolver(), args.bind))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        print(f"corral dag-resolver on {args.bind}", flush=True)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    run_async(serve())
