"""Configuration: every tunable with its default and the reason for the number.

Values come from flags first, then ``CORRAL_*`` environment variables, then
these defaults (see ``SchedulerConfig.from_env``).
"""

from __future__ import annotations

import os

import msgspec

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

# Terminal jobs kept in memory for fast status/wait answers; older ones are
# read back from SQLite on demand. 100k jobs is about 60 MB.
RECENT_FINISHED = 100_000

# The store commits everything that piled up while the last commit ran, up
# to this many operations per transaction (bounds a transaction's latency).
MAX_BATCH_OPS = 20_000


class SchedulerConfig(msgspec.Struct, kw_only=True):
    bind: str = DEFAULT_ADDRESS
    db: str = DEFAULT_DB
    strategy: str = DEFAULT_STRATEGY
    heartbeat_interval: float = HEARTBEAT_INTERVAL_S
    suspect_after: float = SUSPECT_AFTER_S
    lease: float = LEASE_S
    lease_grace: float = LEASE_GRACE_S
    backoff_base: float = BACKOFF_BASE_S
    backoff_factor: float = BACKOFF_FACTOR
    backoff_cap: float = BACKOFF_CAP_S
    durability: str = "normal"  # "normal": survives kill -9; "full": also power loss
    priority_aging: float = 30.0  # a job ready this long goes before later arrivals
    queue_weights: str = ""  # "heavy=1,light=3": shares of queues that share workers
    metrics_port: int = 0  # serve Prometheus /metrics on this port; 0: off
    dag_resolver: str = ""  # address of a DAG resolver in its own process; "": in-process
    metrics_addr: str = "127.0.0.1"

    def weights(self) -> dict[str, float]:
        """``queue_weights`` parsed; raises ValueError naming the bad part."""
        weights: dict[str, float] = {}
        for part in filter(None, (p.strip() for p in self.queue_weights.split(","))):
            name, sep, value = part.partition("=")
            try:
                weight = float(value)
            except ValueError:
                weight = -1.0
            if not sep or not name or weight <= 0:
                raise ValueError(
                    f"bad queue weight {part!r}: use QUEUE=WEIGHT with WEIGHT > 0, "
                    "e.g. heavy=1,light=3"
                )
            weights[name] = weight
        return weights

    @classmethod
    def from_env(cls, **overrides: object) -> SchedulerConfig:
        """Defaults, overridden by CORRAL_* variables, overridden by non-None ``overrides``."""
        values: dict[str, object] = {}
        for field in msgspec.structs.fields(cls):
            raw = os.environ.get(f"CORRAL_{field.name.upper()}")
            if raw is not None:
                kind = type(field.default)
                values[field.name] = kind(raw) if kind in (int, float) else raw
        values.update({k: v for k, v in overrides.items() if v is not None})
        return msgspec.convert(values, cls)


def env_address(default: str = DEFAULT_ADDRESS) -> str:
    """The scheduler address clients and workers connect to: CORRAL_ADDRESS or the default."""
    return os.environ.get("CORRAL_ADDRESS", default)
