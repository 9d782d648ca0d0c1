"""Messages between the scheduler-side actors (in-process; wire messages live in
``transport.protocol``).

Each message is a msgspec Struct; most carry batches, so one mailbox hop moves
many jobs. ``Peer`` is the transport's opaque id of a connected worker or client.
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec

from transport import protocol as wire

Peer = bytes


class _Msg(msgspec.Struct, frozen=True):
    pass


ClientRequest = (
    wire.Submit
    | wire.Wait
    | wire.GetStatus
    | wire.GetJob
    | wire.CancelJobs
    | wire.ListJobs
    | wire.Requeue
    | wire.SubmitWorkflow
    | wire.GetWorkflow
    | wire.Subscribe  # a client key's, checked against its jobs first (owners)
    | wire.SetLimit
    | wire.RemoveLimit
    | wire.ListLimits
    | wire.AddSchedule
    | wire.ListSchedules
    | wire.ChangeSchedule
)


# gateway -> scheduler / dispatcher: a decoded frame from the network
class FromClient(_Msg, frozen=True):
    peer: Peer
    message: ClientRequest


class FromWorker(_Msg, frozen=True):
    peer: Peer
    message: (
        wire.WorkerHello | wire.Results | wire.Heartbeat | wire.Drain | wire.Goodbye | wire.Progress
    )


class SubscriptionRequest(_Msg, frozen=True):
    """gateway -> event hub: a client (un)subscribing or acknowledging an Events frame."""

    peer: Peer
    message: wire.Subscribe | wire.EventsAck | wire.Unsubscribe


class Publish(_Msg, frozen=True):
    """scheduler / dispatcher -> event hub: committed happenings, oldest first, as
    (kind, job_id, status, queue, worker, token, fraction, message)."""

    events: list[tuple[Any, ...]]


class SubscriberCount(_Msg, frozen=True):
    """event hub -> scheduler: how many subscriptions exist (0: skip building events). The
    gateway also sends ``SubscriberCount(1)`` when it reads a Subscribe, so the scheduler
    records events before it handles any request the same client sent after it."""

    count: int


# anyone -> gateway
class Send(_Msg, frozen=True):
    peer: Peer
    message: wire.Message


class PeerUnreachable(_Msg, frozen=True):
    """gateway -> dispatcher: a send to this peer failed; it disconnected."""

    peer: Peer


# scheduler -> strategy: jobs that became ready
class ReadyJob(msgspec.Struct, gc=False, array_like=True):
    job_id: int
    priority: int
    queue: str
    seq: int  # submission order; FIFO and tie-breaks use it
    enqueued_at: float  # monotonic seconds; priority aging uses it
    taken: bool = False  # handed out already (lets two indexes share one job)
    task: str = ""  # only a worker that has this task may be given the job
    concurrency_key: str = ""  # "": none (strategies.gates)
    max_concurrent: int = 0  # 0: no cap on the key's running jobs
    order: int = 0  # the strategy's arrival count at its push (kept when held and released)


class Enqueue(_Msg, frozen=True):
    jobs: list[ReadyJob]


class KeysFreed(_Msg, frozen=True):
    """scheduler -> strategy: these jobs with a concurrency key left RUNNING (their slots
    of the key are free)."""

    job_ids: list[int]


class RunningKeyed(_Msg, frozen=True):
    """scheduler -> strategy, at start-up: the RUNNING jobs with a concurrency key, as
    (job id, key, max_concurrent, seq): they hold their key's slots until they end."""

    jobs: list[tuple[int, str, int, int]]


class SetLimits(_Msg, frozen=True):
    """scheduler -> strategy: rate limits set, as (name, count, period, burst, tat or None
    to keep the bucket's state), and names removed. ``declared``: the names among
    ``limits`` that tasks declared (a start-up's recovered ones); an admin set the others."""

    limits: list[tuple[str, int, float, int, float | None]] = []
    removed: list[str] = []
    declared: list[str] = []


class DeclaredLimits(_Msg, frozen=True):
    """The rate limits a worker's tasks declare, (task, count, period, burst): dispatcher ->
    strategy at its hello, before its credit (so no job of the task starts unlimited);
    then strategy -> scheduler, those it applied (no admin limit of that name), to keep."""

    limits: list[tuple[str, int, float, int]]


class GateTick(_Msg, frozen=True):
    """The strategy's one timer: a held job's bucket has a token again."""


# dispatcher -> strategy: worker capacity changes (credits are free slots)
class WorkerCredit(_Msg, frozen=True):
    peer: Peer
    name: str
    queues: tuple[str, ...]
    slots: int
    credit: int  # slots freed (positive) since the last message
    tasks: frozenset[str] = frozenset()  # the tasks it announced at hello


class WorkerCredits(_Msg, frozen=True):
    """The credits of one dispatcher turn, in one message."""

    grants: list[WorkerCredit]


class WorkerGone(_Msg, frozen=True):
    peer: Peer


# strategy -> scheduler: proposed assignments, still to be compare-and-swapped
class Picked(_Msg, frozen=True):
    picks: list[tuple[int, Peer]]
    # (name, tat) of the rate limits these picks took tokens from: persisted with the leases
    limits: list[tuple[str, float]] = []
    # When they took those tokens (Unix time; 0.0: none taken): their leases' started_at,
    # so the recorded starts keep each limit's bound exactly. A lease is written a moment
    # later, and a burst leased 1 ms late beside a token leased at once exceeds it.
    at: float = 0.0


# scheduler -> strategy: a pick that lost its compare-and-swap gives its slot back
class ReturnCredit(_Msg, frozen=True):
    peer: Peer
    credit: int
    job_ids: tuple[int, ...] = ()  # the picks that lost: a key's slot they took is free


# scheduler -> dispatcher: committed assignments, to be sent to the workers
class Leased(_Msg, frozen=True):
    leases: list[tuple[Peer, wire.Assignment]]


# dispatcher -> scheduler
class WorkerResults(_Msg, frozen=True):
    """Results from every worker the dispatcher heard in one turn: (peer, name, results)."""

    batches: list[tuple[Peer, str, list[wire.JobResult]]]


class WorkerLost(_Msg, frozen=True):
    """The worker is dead or left; these jobs were leased to it. ``reason`` is recorded on
    each lost attempt (e.g. "worker stopped", "no heartbeat for the lease time plus grace")."""

    peer: Peer
    name: str
    job_ids: list[int]
    reason: str = "worker lost"


class LeasesEnded(_Msg, frozen=True):
    """dispatcher -> scheduler: these (job_id, token) leases of a connected worker ended
    without a result. ``how``: "unheld" (the worker never got or never started them:
    re-queue, no attempt counted), "lost" (a failed attempt: retried while attempts
    remain), "fatal" (FAILED at once: a retry cannot help)."""

    peer: Peer
    name: str
    leases: list[tuple[int, int]]
    how: str
    reason: str


class Adopt(_Msg, frozen=True):
    """dispatcher -> scheduler: a (re)connecting worker says it still runs these leases."""

    peer: Peer
    name: str
    leases: list[tuple[int, int]]


class Adopted(_Msg, frozen=True):
    """scheduler -> dispatcher: which of a worker's claimed leases are really its own, and
    the timeouts of the accepted ones that have one (job_id, seconds), for the backstop."""

    peer: Peer
    accepted: list[tuple[int, int]]
    refused: list[tuple[int, int]]
    timeouts: list[tuple[int, float]] = []


class RevokeLease(_Msg, frozen=True):
    """scheduler -> dispatcher: this lease ended without a result (cancelled); stop the job.
    ``confirm``: say when its handler has stopped (``StopsConfirmed``): a concurrency key's
    slot and a no-overlap schedule wait for that, not for the cancel alone."""

    peer: Peer
    job_id: int
    token: int
    reason: str
    confirm: bool = False


class StopsConfirmed(_Msg, frozen=True):
    """dispatcher -> scheduler: the handlers of these revoked leases (``RevokeLease.confirm``)
    no longer run: their worker reported the job's end, stopped listing it, or is gone
    (silent past lease + grace, so it has stopped it itself)."""

    job_ids: list[int]


class WorkerNames(_Msg, frozen=True):
    """dispatcher -> scheduler: which peer is which worker (for job views), the tasks it
    announced, and whether it takes new jobs now (False: dead, draining or gone)."""

    peer: Peer
    name: str
    tasks: frozenset[str] = frozenset()
    available: bool = True


class StatusPart(_Msg, frozen=True):
    """A status answer being assembled: the scheduler adds job figures, the strategy actor
    the queues, and the dispatcher the workers, then replies."""

    peer: Peer
    request_id: int
    fields: dict[str, Any]


# dispatcher <-> heartbeat monitor
class Seen(_Msg, frozen=True):
    peers: list[Peer]
    at: float


class Forget(_Msg, frozen=True):
    peer: Peer


class Silent(_Msg, frozen=True):
    """The worker has not been heard from for ``silent_for`` seconds."""

    peer: Peer
    state: str  # "suspect" | "dead"
    silent_for: float


# scheduler <-> DAG resolver
class Track(_Msg, frozen=True):
    """A new job waits on these parents (those not yet known SUCCEEDED)."""

    job_id: int
    parents: list[int]


class Finished(_Msg, frozen=True):
    """These jobs' terminal states are committed."""

    jobs: list[tuple[int, str]]


class Release(_Msg, frozen=True):
    """All parents of these jobs succeeded: they may be queued."""

    job_ids: list[int]


class Doom(_Msg, frozen=True):
    """These jobs can never run: an ancestor failed. ``(job_id, cause)``."""

    jobs: list[tuple[int, str]]


class CheckWorkflow(_Msg, frozen=True):
    """scheduler -> DAG resolver: is this workflow a DAG of uniquely named steps?"""

    peer: Peer
    request: wire.SubmitWorkflow


class WorkflowChecked(_Msg, frozen=True):
    """DAG resolver -> scheduler: a topological order of the steps, or why it was rejected."""

    peer: Peer
    request: wire.SubmitWorkflow
    order: list[int]
    rejection: Any  # actors.errors.WorkflowRejected | None


# scheduler -> store
class Write(_Msg, frozen=True):
    """Persist ``ops``; once committed, ``reply_to`` gets ``tag`` in a ``Written``."""

    ops: Any  # actors.scheduler.ops.Ops
    reply_to: Any  # an Actor
    tag: Any


class Written(_Msg, frozen=True):
    """One per writer per commit: the tags of its writes that commit made durable, in order."""

    tags: list[Any]


class Committed(_Msg, frozen=True):
    """store backend -> store actor: one transaction of a commit chain ended: the writes it
    made durable (in the order their effects apply), the reads whose earlier writes it
    includes, its operations and seconds; or, with ``error`` (a StoreError or
    StoreInconsistent), what stopped the chain: nothing of ``writes`` is durable."""

    writes: list[Any]  # Write
    reads: list[Any]  # Read
    ops: int
    seconds: float
    error: Any = None


class ChainEnded(_Msg, frozen=True):
    """The commit chain's task ended (its commits were all reported before this)."""

    task: Any  # asyncio.Task[None]


class StoreFailed(_Msg, frozen=True):
    """store actor -> itself: stop the scheduler for ``error`` (a StoreError), or crash with
    it (any other exception: a defect), found while acknowledging a commit outside the
    actor's own task; nothing of that commit was acknowledged."""

    error: Any  # Exception


class Read(_Msg, frozen=True):
    """Run ``call(backend)`` (one of ``StoreBackend``'s typed reads, bound to its arguments)
    after every write queued before it; resolve ``reply`` with its result or error."""

    call: Any  # Callable[[StoreBackend], Awaitable[T]]
    reply: asyncio.Future[Any]


# timers
class Tick(_Msg, frozen=True):
    at: float


class ReclaimOrphans(_Msg, frozen=True):
    """The lease + grace after start-up has passed: reclaim RUNNING jobs nobody claimed."""


class PurgeTick(_Msg, frozen=True):
    """The retention timer (actors.scheduler.retention): time for the next purge batch."""
