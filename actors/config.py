"""Configuration: every tunable with its default, the reason for the number, and what is
allowed.

Values come from flags first, then ``CORRAL_*`` environment variables, then these
defaults. Flags and variables go through the same validation, in one place
(``load_settings``): msgspec constraints on the fields, then the checks that relate
two settings. A bad value raises ConfigError naming the setting (flag and variable),
the value given and what is allowed; the CLI prints it on one line and exits 2.
"""

from __future__ import annotations

import math
import os
import urllib.parse
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from actors.addresses import SCHEMES
from actors.errors import ConfigError
from actors.settings import load_settings as load_settings
from actors.settings import setting_name as setting_name

DEFAULT_ADDRESS = "tcp://127.0.0.1:5555"
DEFAULT_DB = "./corral.db"
DEFAULT_STRATEGY = "priority"

# A worker says it is alive this often. One second keeps the traffic negligible
# (one tiny frame per worker per second) while detection stays in seconds.
HEARTBEAT_INTERVAL_S = 1.0
# Silent for 3 intervals: suspect (one lost or late heartbeat is normal on a LAN).
SUSPECT_AFTER_S = 3.0
# A lease lasts this long without renewal; every heartbeat renews all of a
# worker's leases. Silent for a whole lease, the worker is dead: no new work.
LEASE_S = 5.0
# After a lease lapses the scheduler waits this much longer before reclaiming,
# so a self-fencing worker (which stops its jobs at LEASE_S by its own clock)
# has surely stopped, even with message delay and clock-rate drift. A crashed
# worker's jobs therefore run again about 6 s after its last heartbeat.
LEASE_GRACE_S = 1.0

# Retry backoff: delay = min(cap, base * factor ** (attempt - 1)) * jitter,
# jitter uniform in [0.5, 1.0] ("equal jitter"), so retries of a burst of
# failures spread out instead of stampeding back together.
BACKOFF_BASE_S = 1.0
BACKOFF_FACTOR = 2.0
BACKOFF_CAP_S = 300.0

# Retention (actors.scheduler.retention): finished jobs (SUCCEEDED, CANCELLED,
# UPSTREAM_FAILED) are deleted a week after they finished, FAILED ones (dead letters,
# which someone may still inspect and re-queue) after 30 days; 0 ("off") keeps them.
RETENTION_S = 7 * 86_400.0
FAILED_RETENTION_S = 30 * 86_400.0

# Terminal jobs kept in memory for fast status/wait answers; older ones are
# read back from SQLite on demand. 100k jobs is about 60 MB.
RECENT_FINISHED = 100_000

# The store commits everything that piled up while the last commit ran, up
# to this many operations per transaction (bounds a transaction's latency).
MAX_BATCH_OPS = 20_000


# PostgreSQL with standbys: a leader's term lasts this long unless renewed (it renews every
# quarter of it). A killed leader is replaced after about this plus a standby's poll (0.25
# s): two seconds keeps a takeover well under the 5 s bound while a leader can miss
# three renewals in a row (a loaded machine, a slow commit) before it loses its term.
LEADER_TTL_S = 2.0
# Below this, a renewal (a round trip to PostgreSQL, possibly waiting behind a commit)
# would not reliably fit in a quarter of the term.
MIN_LEADER_TTL_S = 0.5

# What a tcp:// --bind host may be that is no address another machine can use.
WILDCARD_HOSTS = ("*", "0.0.0.0", "::", "[::]", "")

# "full" (fsync at every commit) is the default: an acknowledged job survives power loss,
# not only a crash of the process. "normal" is the opt-in for speed (bench/README.md).
DEFAULT_DURABILITY: Literal["full", "normal"] = "full"

# A lease must outlive one lost or late heartbeat: the worker renews every lease with each
# heartbeat, so with a lease under two intervals one late frame makes every job self-fence.
MIN_LEASE_HEARTBEATS = 2.0

Seconds = Annotated[float, Meta(gt=0, description="a number of seconds > 0")]
Port = Annotated[int, Meta(ge=1, le=65535, description="a TCP port, 1 to 65535")]


# A retention longer than this is a typo (99999999999d), not a policy: "off" keeps jobs.
MAX_RETENTION_S = 36_500 * 86_400.0
_RETENTION = "a duration (30s, 12h, 7d) of at most 36500d (100 years), or off to keep them"


def retention_seconds(text: str) -> float | str:
    """A retention as typed ("7d", "90", "off") in seconds (off: 0); what is not one is
    returned as it was, for the setting's own error."""
    from actors.cli.times import parse_duration  # the one duration syntax (no cycle: lazy)

    if text.strip().lower() in ("off", "never", "forever", "none"):
        return 0.0
    try:
        seconds = parse_duration(text)
    except ValueError:
        return text
    return seconds if seconds <= MAX_RETENTION_S else text


def _is_queue_name(name: str) -> bool:
    """Whether the protocol carries ``name`` as a queue's (``transport.payloads.QueueName``;
    imported here, when settings are checked, not when a command line is parsed)."""
    from transport.payloads import QueueName

    try:
        msgspec.convert(name, QueueName)
    except msgspec.ValidationError:
        return False
    return True


class SchedulerConfig(msgspec.Struct, kw_only=True):
    """The scheduler's settings. Build it with ``from_env`` (validated); a direct
    ``SchedulerConfig(...)`` is for tests and skips validation."""

    bind: Annotated[str, Meta(min_length=1)] = DEFAULT_ADDRESS
    # An SQLite file, or a PostgreSQL database: postgresql://USER[:PASSWORD]@HOST[:PORT]/DB.
    db: Annotated[str, Meta(min_length=1, description="a file path or a postgresql:// DSN")] = (
        DEFAULT_DB
    )
    strategy: str = DEFAULT_STRATEGY
    heartbeat_interval: Seconds = HEARTBEAT_INTERVAL_S
    suspect_after: Seconds = SUSPECT_AFTER_S
    lease: Seconds = LEASE_S
    lease_grace: Annotated[float, Meta(ge=0, description="a number of seconds >= 0")] = (
        LEASE_GRACE_S
    )
    backoff_base: Seconds = BACKOFF_BASE_S
    backoff_factor: Annotated[float, Meta(ge=1, description="a multiplier >= 1")] = BACKOFF_FACTOR
    backoff_cap: Seconds = BACKOFF_CAP_S
    # "full": commits survive power loss (fsync); "normal": they survive kill -9 only.
    durability: Literal["full", "normal"] = DEFAULT_DURABILITY
    # A job ready this long is promoted above every priority (strategies/priority.py).
    priority_aging: Seconds = 30.0
    queue_weights: str = ""  # "heavy=1,light=3": shares of queues that share workers
    dag_resolver: str = ""  # address of a DAG resolver in its own process; "": in-process
    # HTTP (actors.http.server): Prometheus /metrics, and the dashboard later, served from
    # the scheduler's own event loop; None: no HTTP server. Checked by http_settings there.
    http_port: Port | None = None
    # An IP address to listen on; "": --metrics-addr's, 127.0.0.1 by default. Any address
    # but loopback needs http_token_file.
    http_bind: str = ""
    # A file (mode 0600) holding the bearer token every HTTP request must carry; "": none.
    http_token_file: str = ""
    # The older names of http_port and http_bind, kept so existing set-ups still start.
    metrics_port: Port | None = None
    metrics_addr: Annotated[str, Meta(min_length=1)] = "127.0.0.1"
    # PostgreSQL: seconds a leader's term lasts without renewal.
    leader_ttl: Seconds = LEADER_TTL_S
    # PostgreSQL: the address workers and clients use for this scheduler ("": --bind's),
    # which the standbys name; needed when --bind is a wildcard (tcp://*:5555).
    advertise: str = ""
    # CURVE (actors.keys): a folder with the scheduler's key pair and the public keys it
    # accepts, by role; "": no keys, any peer that reaches the address is trusted.
    keys: str = ""
    # Serve an address other hosts can reach without keys (refused unless set).
    insecure: bool = False
    # Per-client allowances (actors.scheduler.quotas): per client key, or for all peers
    # together on a scheduler without keys; far above what one user meets.
    max_jobs_in_flight: Annotated[int, Meta(ge=1, description="a number of jobs >= 1")] = 2_000_000
    max_bytes_in_flight: Annotated[int, Meta(ge=1, description="a number of bytes >= 1")] = 1 << 30
    max_submit_rate: Annotated[float, Meta(gt=0, description="jobs per second > 0")] = 100_000.0
    max_waits: Annotated[int, Meta(ge=1, description="a number of waits >= 1")] = 1_000_000
    max_subscriptions: Annotated[int, Meta(ge=1, description="a number >= 1")] = 64
    # Retention: seconds after which a finished (FAILED: failed_retention) job is deleted;
    # 0 keeps them forever. CORRAL_RETENTION may say "7d", "12h", "off" (normalized below).
    retention: Annotated[float, Meta(ge=0, le=MAX_RETENTION_S, description=_RETENTION)] = (
        RETENTION_S
    )
    failed_retention: Annotated[float, Meta(ge=0, le=MAX_RETENTION_S, description=_RETENTION)] = (
        FAILED_RETENTION_S
    )

    def weights(self) -> dict[str, float]:
        """``queue_weights`` parsed; raises ValueError naming the bad part."""
        weights: dict[str, float] = {}
        for part in filter(None, (p.strip() for p in self.queue_weights.split(","))):
            name, sep, value = part.partition("=")
            try:
                weight = float(value)
            except ValueError:
                weight = -1.0
            name = name.strip()
            if not sep or not name or not weight > 0 or not math.isfinite(weight):
                raise ValueError(
                    f"bad queue weight {part!r}: use QUEUE=WEIGHT with WEIGHT > 0, "
                    "e.g. heavy=1,light=3"
                )
            if not _is_queue_name(name):  # no job could ever be in it
                raise ValueError(f"{name!r} is not a queue name (1 to 64 of A-Z a-z 0-9 _ . : -)")
            if name in weights:
                raise ValueError(f"queue {name!r} is weighed twice")
            weights[name] = weight
        return weights

    @classmethod
    def from_env(cls, **overrides: object) -> SchedulerConfig:
        """Defaults, overridden by CORRAL_* variables, overridden by non-None ``overrides``
        (the flags); raises ConfigError for any value that is not allowed."""
        durations = {"retention": retention_seconds, "failed_retention": retention_seconds}
        config = load_settings(cls, overrides, durations)
        config.check()
        return config

    def check(self) -> None:
        """The rules that relate settings to each other (and name lists the fields'
        types cannot express); raises ConfigError."""
        import strategies

        for field in msgspec.structs.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(setting_name(field.name), value, "a finite number")
        if self.strategy not in strategies.STRATEGIES:
            raise ConfigError(
                setting_name("strategy"),
                self.strategy,
                f"one of {', '.join(sorted(strategies.STRATEGIES))}",
            )
        try:
            self.weights()
        except ValueError as exc:
            raise ConfigError(setting_name("queue_weights"), self.queue_weights, str(exc)) from None
        self._check_db()
        self._check_leadership()
        if not self.keys and not self.insecure and not is_loopback(self.bind):
            raise ConfigError(
                setting_name("bind"),
                self.bind,
                "a loopback address (127.0.0.1, localhost, ::1) without keys: to serve other "
                "hosts give --keys DIR / CORRAL_KEYS (see `corral keygen`), or --insecure / "
                "CORRAL_INSECURE=1 to trust anyone who reaches the port",
            )
        for name in ("bind", "dag_resolver"):
            address = getattr(self, name)
            scheme, sep, _ = address.partition("://")
            if address and not (sep and scheme in SCHEMES):  # a transport would refuse it later
                raise ConfigError(
                    setting_name(name),
                    address,
                    "tcp://HOST:PORT, ipc:///PATH, inproc://NAME or mem://NAME",
                )
            if address.startswith("tcp://") and not _tcp_port_ok(address):
                raise ConfigError(
                    setting_name(name), address, "tcp://HOST:PORT with PORT 1 to 65535"
                )
        interval = self.heartbeat_interval
        if self.lease < MIN_LEASE_HEARTBEATS * interval:
            raise ConfigError(
                setting_name("lease"),
                self.lease,
                f"at least {MIN_LEASE_HEARTBEATS:g} x --heartbeat-interval ({interval:g} s): "
                "every heartbeat renews the leases, and a lease must outlive one late "
                "heartbeat, or every job stops itself (self-fencing)",
            )
        if not interval < self.suspect_after <= self.lease:
            raise ConfigError(
                setting_name("suspect_after"),
                self.suspect_after,
                f"more than --heartbeat-interval ({interval:g} s) and at most --lease "
                f"({self.lease:g} s)",
            )
        if self.backoff_cap < self.backoff_base:
            raise ConfigError(
                setting_name("backoff_cap"),
                self.backoff_cap,
                f"at least --backoff-base ({self.backoff_base:g} s)",
            )

    def _check_leadership(self) -> None:
        if self.leader_ttl < MIN_LEADER_TTL_S:
            raise ConfigError(
                setting_name("leader_ttl"),
                self.leader_ttl,
                f"at least {MIN_LEADER_TTL_S:g} s: the leader renews its term every quarter "
                "of it, and each renewal is a round trip to PostgreSQL",
            )
        if self.advertise:
            problem = address_problem(self.advertise)
            if problem:
                raise ConfigError(setting_name("advertise"), self.advertise, problem)
            if not is_postgres(self.db):  # its start line would name an address not served
                raise ConfigError(
                    setting_name("advertise"),
                    self.advertise,
                    "given with PostgreSQL only (--db postgresql://...): an SQLite scheduler "
                    "is the only one, reached at --bind",
                )
        elif is_postgres(self.db) and is_wildcard(self.bind):
            raise ConfigError(
                setting_name("bind"),
                self.bind,
                "a wildcard address with PostgreSQL only with --advertise / CORRAL_ADVERTISE "
                "tcp://HOST:PORT, the address workers and clients use to reach this "
                "scheduler (standbys send them there)",
            )

    def _check_db(self) -> None:
        if self.db != self.db.strip() or not self.db:
            # " " would make a database file named by a space (a stray CORRAL_DB=" ").
            raise ConfigError(
                setting_name("db"), self.db, "an SQLite file path or a postgresql:// address"
            )
        if not is_postgres(self.db):
            return
        problem = dsn_problem(self.db)
        if problem:
            raise ConfigError(
                setting_name("db"),
                redact_dsn(self.db),
                f"postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE ({problem}), or an SQLite "
                "file path",
            )
        if self.durability != "full":
            raise ConfigError(
                setting_name("durability"),
                self.durability,
                "full with PostgreSQL (every commit waits for synchronous_commit on); "
                "normal is for SQLite",
            )


# ------------------------------------------------------------------ PostgreSQL DSNs

_DSN_SCHEMES = ("postgresql", "postgres")


def is_postgres(db: str) -> bool:
    """Whether ``--db`` names a PostgreSQL database (anything else is an SQLite file)."""
    scheme, sep, _ = db.partition("://")
    return bool(sep) and scheme.lower() in _DSN_SCHEMES


def redact_dsn(dsn: str) -> str:
    """``dsn`` without its password (for messages and the start line)."""
    if not is_postgres(dsn):
        return dsn
    scheme, _, rest = dsn.partition("://")
    netloc, slash, tail = rest.partition("/")
    user, at, hosts = netloc.rpartition("@")
    if at and ":" in user:
        netloc = f"{user.split(':', 1)[0]}:***@{hosts}"
    path, mark, query = tail.partition("?")
    if mark:  # ?password=... works too
        pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
        query = "&".join(f"{k}={'***' if k == 'password' else v}" for k, v in pairs)
    return f"{scheme}://{netloc}{slash}{path}{mark}{query}"


def dsn_problem(dsn: str) -> str | None:
    """What is wrong with a postgresql:// DSN, or None: hosts with valid ports (several,
    comma-separated, are allowed), at most one database name, no fragment."""
    try:
        parts = urllib.parse.urlsplit(dsn)
    except ValueError as exc:
        return str(exc)
    hosts = parts.netloc.rpartition("@")[2]
    for host in filter(None, hosts.split(",")):
        if host.startswith("["):  # [IPv6]:port
            name, _, after = host.partition("]")
            port = after.removeprefix(":") if after.startswith(":") else None
        else:
            name, colon, port_text = host.partition(":")
            port = port_text if colon else None
        if not name.strip("["):
            return f"no host before the port in {host!r}"
        if port is not None and (not port.isdigit() or not 1 <= int(port) <= 65535):
            return f"bad port {port!r}: a number from 1 to 65535"
    if "/" in parts.path.lstrip("/"):
        return f"one database name after the host, not {parts.path.lstrip('/')!r}"
    if parts.fragment:
        return f"unexpected #{parts.fragment}"
    return None


LOOPBACK_HOSTS = ("localhost", "::1", "[::1]")


def is_loopback(address: str) -> bool:
    """Whether only this machine can reach ``address`` (loopback tcp://, ipc://, inproc://,
    mem://)."""
    if not address.startswith("tcp://"):
        return True
    host = address.removeprefix("tcp://").rpartition(":")[0]
    return host in LOOPBACK_HOSTS or host.startswith("127.")


def is_wildcard(address: str) -> bool:
    """Whether a tcp:// address names every interface (tcp://*:5555, tcp://0.0.0.0:5555)."""
    if not address.startswith("tcp://"):
        return False
    host = address.removeprefix("tcp://").rpartition(":")[0]
    return host in WILDCARD_HOSTS


def address_problem(address: str) -> str | None:
    """What keeps ``address`` from being one others connect to, or None."""
    if address.startswith("ipc://") and len(address) > len("ipc://"):
        return None
    if not address.startswith("tcp://") or not _tcp_port_ok(address):
        return "tcp://HOST:PORT (PORT 1 to 65535) or ipc://PATH, where others reach this scheduler"
    if is_wildcard(address):
        return "a host others can reach, not a wildcard"
    return None


def _tcp_port_ok(address: str) -> bool:
    port = address.rsplit(":", 1)[-1]
    return port.isdigit() and 1 <= int(port) <= 65535


LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]


class LogConfig(msgspec.Struct, kw_only=True):
    """Logging of every long-running command (scheduler, worker, dag-resolver, demo)."""

    log_level: LogLevel = "WARNING"  # any case is accepted: "info" is INFO
    log_format: Literal["text", "json"] = "text"  # json: one object per line

    @classmethod
    def from_env(cls, **overrides: object) -> LogConfig:
        return load_settings(cls, overrides, normalize={"log_level": str.upper})


def env_address(default: str = DEFAULT_ADDRESS) -> str:
    """The scheduler address(es) clients and workers connect to: CORRAL_CONNECT (named
    after the flag, as every other setting), else CORRAL_ADDRESS, else the default; several
    are separated by commas (``actors.addresses.parse``). An empty variable counts as unset."""
    return os.environ.get("CORRAL_CONNECT") or os.environ.get("CORRAL_ADDRESS") or default
