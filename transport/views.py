"""The read models of the wire protocol: what a client may see of jobs, attempts,
workflows, workers, queues and the whole scheduler, and the events it may stream.
``transport.protocol`` re-exports all of it; import from there.
"""

from __future__ import annotations

import msgspec

from transport.limits import GateView, LimitView
from transport.payloads import NONE_RAW


class AttemptView(msgspec.Struct, frozen=True):
    """One finished attempt of a job."""

    token: int
    worker: str | None
    started_at: float | None
    finished_at: float | None
    outcome: str  # "succeeded", "error", "lost", "cancelled", "interrupted" (not counted)
    error: str | None = None


# The most bytes of a job's arguments its view carries (``JobView.args``): far more than a
# page or a terminal shows, far less than a frame holds beside the result and the errors.
MAX_SHOWN_PAYLOAD = 256 * 1024


class JobView(msgspec.Struct, frozen=True):
    """Everything a client may read about one job."""

    job_id: int
    task: str
    status: str
    priority: int
    queue: str
    attempts: int
    max_retries: int
    token: int
    worker: str | None
    depends_on: list[int]
    idempotency_key: str | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    result: msgspec.Raw = NONE_RAW
    error: str | None = None
    history: list[AttemptView] = []
    # PENDING: the Unix time before which it is not handed to a worker (a delayed job, or
    # a retry's backoff); 0: none.
    not_before: float = 0.0
    concurrency_key: str = ""  # "": none; at most max_concurrent of the key's jobs run
    max_concurrent: int = 0
    # Its workflow and step name (None: submitted alone).
    workflow_id: int | None = None
    step: str | None = None
    # Its arguments as submitted (msgpack), in a job's own view (``GetJob``) only, not in
    # listings; nil when, together, they are over ``MAX_SHOWN_PAYLOAD`` bytes (a reply
    # must fit its frame). ``payload_bytes``: their size (0 in listings).
    args: msgspec.Raw = NONE_RAW
    kwargs: msgspec.Raw = NONE_RAW
    payload_bytes: int = 0


class StepView(msgspec.Struct, frozen=True):
    name: str
    job_id: int
    status: str
    after: list[str]
    task: str
    priority: int
    attempts: int
    error: str | None = None


class WorkflowView(msgspec.Struct, frozen=True):
    workflow_id: int
    name: str
    created_at: float
    steps: list[StepView]  # in topological order


class RunningView(msgspec.Struct, frozen=True):
    """A job a worker is running, with its latest progress report."""

    job_id: int
    token: int
    progress: float | None = None  # 0.0 .. 1.0, None before the first report
    message: str = ""


class WorkerView(msgspec.Struct, frozen=True):
    name: str
    state: str
    slots: int
    running: int
    queues: list[str]
    last_seen_s: float
    jobs: list[RunningView] = []
    prefetch: int = 0  # of ``slots``, those that hold prefetched jobs (``--prefetch``)


class QueueView(msgspec.Struct, frozen=True):
    """Ready jobs in one queue, by priority band (high > 0, normal = 0, low < 0)."""

    ready: int
    high: int = 0
    normal: int = 0
    low: int = 0
    waiting_for_worker: int = 0  # ready jobs no connected worker may run (task not announced)
    # The ready job that arrived first (0: none) and how long it has waited, in seconds,
    # since it became ready on this scheduler (a restart or failover starts it again). As in
    # ``ready``, a job cancelled while ready counts until a worker's next pick drops it.
    oldest_job: int = 0
    oldest_s: float = 0.0


class SchedulerView(msgspec.Struct, frozen=True):
    """A scheduler on the same database (PostgreSQL), the leader or a standby."""

    address: str
    role: str  # "leader" or "standby"
    seen_s: float  # seconds since it last said it is alive


class ClusterView(msgspec.Struct, frozen=True):
    """Who leads, in which term, and every scheduler seen lately (PostgreSQL only)."""

    leader: str  # the leader's address: the scheduler that answered
    term: int
    schedulers: list[SchedulerView] = []


class StatusView(msgspec.Struct, frozen=True):
    jobs: dict[str, int]
    workers: list[WorkerView]
    strategy: str
    counters: dict[str, int] = {}  # e.g. refused_results: stale results refused
    queues: dict[str, QueueView] = {}
    completed_last_minute: int = 0  # jobs that ended (any final state) in the last 60 s
    throughput_per_s: float = 0.0  # SUCCEEDED per second over the last 60 s
    dead_letters: int = 0  # jobs in FAILED
    cluster: ClusterView | None = None  # None: a single scheduler (SQLite)
    # "keys": CURVE with a key folder; "insecure": another host may reach it without keys;
    # "": loopback without keys (only this machine reaches it).
    security: str = ""
    # Concurrency keys at their limit, and rate limits with the ready jobs waiting on them.
    keys: list[GateView] = []
    limits: list[LimitView] = []


class Event(msgspec.Struct, frozen=True, array_like=True, omit_defaults=True):
    """Something that happened, published after it was committed.

    kind "job": ``job_id`` moved to ``status``; "progress": a running job reported
    ``fraction`` and ``message``; "worker": ``worker`` became ``status`` (joined,
    alive, suspect, dead, left)."""

    seq: int
    at: float
    kind: str
    job_id: int = 0
    status: str = ""
    queue: str = ""
    worker: str = ""
    token: int = 0
    fraction: float = -1.0
    message: str = ""
