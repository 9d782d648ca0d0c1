"""The flags of ``corral scheduler`` and ``corral dag-resolver``, and the logging flags every
long-running command takes. Light to import (``actors.cli.common``): the commands
themselves are in ``actors.cli.servers``, imported when one of them runs.
"""

from __future__ import annotations

import argparse

from actors.cli.common import Add, Later
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
)

# Commands that run until stopped and log while they do: they take the logging flags
# after their name too (`corral scheduler --log-level info`).
LONG_RUNNING = ("scheduler", "worker", "dag-resolver", "demo")

# The names in strategies.STRATEGIES, sorted, for --strategy's help: importing the
# strategies imports the scheduler's messages (tests/actors/test_cli_imports.py checks
# that the two agree).
STRATEGY_NAMES = ("fifo", "least-loaded", "priority", "round-robin")

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
    p = add(
        "scheduler", Later("actors.cli.servers", "cmd_scheduler"), "run the scheduler (the brain)"
    )
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
            f"assignment strategy: {', '.join(STRATEGY_NAMES)} (default {DEFAULT_STRATEGY})",
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
        Later("actors.cli.servers", "cmd_dag_resolver"),
        "run the DAG resolver actor in its own process (for `scheduler --dag-resolver`)",
    )
    p.add_argument("--bind", required=True, metavar="ADDR", help="e.g. tcp://127.0.0.1:5556")
