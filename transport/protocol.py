"""The wire protocol: every frame between scheduler, workers and clients.

Owns the message Structs, the two tagged unions (what the scheduler accepts and
what it sends), and the encoder/decoders, built once. The limits and the payloads
inside messages (``transport.payloads``) and the read models (``transport.views``)
are re-exported here, so the protocol is one namespace: ``wire.JobSpec``. Every frame that arrives
from the network goes through :func:`decode_request`: size check first, then a
typed msgspec decode; anything else raises :class:`~transport.errors.BadFrame`.

Evolution rule (from msgspec's own guidance): new fields get defaults and go
last, so an older peer's frames still decode. ``PROTOCOL_VERSION`` changes only
when that rule cannot hold; peers exchange it in their hello.

User payloads (``args``, ``kwargs``, ``result``) travel as :class:`msgspec.Raw`:
the scheduler checks their shape and stores and forwards the bytes untouched,
so it never pays to decode or re-encode data it does not read.
"""

from __future__ import annotations

from typing import Annotated, get_args

import msgspec

from transport.errors import BadFrame
from transport.framing import check_size, request_id_of
from transport.jobs import CancelJobs as CancelJobs
from transport.jobs import CancelReply as CancelReply
from transport.jobs import GetJob as GetJob
from transport.jobs import JobList as JobList
from transport.jobs import JobReply as JobReply
from transport.jobs import ListJobs as ListJobs
from transport.jobs import Requeue as Requeue
from transport.jobs import RequeueReply as RequeueReply
from transport.limits import DeclaredLimit as DeclaredLimit
from transport.limits import GateView as GateView
from transport.limits import LimitsReply as LimitsReply
from transport.limits import LimitView as LimitView
from transport.limits import ListLimits as ListLimits
from transport.limits import RemoveLimit as RemoveLimit
from transport.limits import SetLimit as SetLimit
from transport.message import Message as Message
from transport.payloads import EMPTY_ARGS as EMPTY_ARGS
from transport.payloads import EMPTY_KWARGS as EMPTY_KWARGS
from transport.payloads import MAX_ERROR_CHARS as MAX_ERROR_CHARS
from transport.payloads import MAX_FRAME_BYTES as MAX_FRAME_BYTES
from transport.payloads import MAX_JOB_PAYLOAD_BYTES as MAX_JOB_PAYLOAD_BYTES
from transport.payloads import MAX_SLOTS as MAX_SLOTS
from transport.payloads import NONE_RAW as NONE_RAW
from transport.payloads import PROTOCOL_VERSION as PROTOCOL_VERSION
from transport.payloads import Assignment as Assignment
from transport.payloads import Backoff as Backoff
from transport.payloads import JobId as JobId
from transport.payloads import JobOutcome as JobOutcome
from transport.payloads import JobResult as JobResult
from transport.payloads import JobSpec as JobSpec
from transport.payloads import ParentResult as ParentResult
from transport.payloads import Priority as Priority
from transport.payloads import QueueName as QueueName
from transport.payloads import RequestId as RequestId
from transport.payloads import Retries as Retries
from transport.payloads import Seconds as Seconds
from transport.payloads import StepSpec as StepSpec
from transport.payloads import TaskName as TaskName
from transport.payloads import is_msgpack_array as is_msgpack_array
from transport.payloads import is_msgpack_map as is_msgpack_map
from transport.payloads import pack as pack
from transport.payloads import payload_bytes as payload_bytes
from transport.payloads import truncate_error as truncate_error
from transport.payloads import unpack as unpack
from transport.payloads import unpack_for_view as unpack_for_view
from transport.schedules import AddSchedule as AddSchedule
from transport.schedules import ChangeSchedule as ChangeSchedule
from transport.schedules import ListSchedules as ListSchedules
from transport.schedules import ScheduleReply as ScheduleReply
from transport.schedules import ScheduleSpec as ScheduleSpec
from transport.schedules import ScheduleView as ScheduleView
from transport.views import MAX_SHOWN_PAYLOAD as MAX_SHOWN_PAYLOAD
from transport.views import AttemptView as AttemptView
from transport.views import ClusterView as ClusterView
from transport.views import Event as Event
from transport.views import JobView as JobView
from transport.views import QueueView as QueueView
from transport.views import RunningView as RunningView
from transport.views import SchedulerView as SchedulerView
from transport.views import StatusView as StatusView
from transport.views import StepView as StepView
from transport.views import WorkerView as WorkerView
from transport.views import WorkflowView as WorkflowView

# The payloads and the read models live in transport.payloads and transport.views and are
# re-exported here (``X as X``: explicit, so a user's strict type checker sees them too):
# the protocol is one namespace.


# ---------------------------------------------------------- to the scheduler


class ClientHello(Message, frozen=True):
    protocol: int


class WorkerHello(Message, frozen=True):
    protocol: int
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    slots: Annotated[int, msgspec.Meta(ge=1, le=MAX_SLOTS)]
    queues: Annotated[list[QueueName], msgspec.Meta(max_length=1000)] = msgspec.field(
        default_factory=lambda: ["default"]
    )
    tasks: Annotated[list[TaskName], msgspec.Meta(max_length=MAX_SLOTS)] = []
    # (job_id, token) still running, or finished with the result not yet acknowledged,
    # after a reconnect. Bounded: a worker holds at most its slots, plus unacked results.
    leases: Annotated[list[tuple[int, int]], msgspec.Meta(max_length=2 * MAX_SLOTS)] = []
    sent_at: float = 0.0  # the worker's monotonic clock; a lease basis like a heartbeat's
    # Slots taken by handlers it holds no lease or unacknowledged result for (a stopped
    # thread stuck in a C call): not free, though nothing in ``leases`` says so.
    busy: Annotated[int, msgspec.Meta(ge=0, le=MAX_SLOTS)] = 0
    # The database the claimed leases come from (a Welcome's ``database_id``; "" before
    # any): a scheduler serving another database does not adopt them.
    database_id: Annotated[str, msgspec.Meta(max_length=64)] = ""
    # The rate limits its tasks declare (``@task(rate_limit=...)``), applied by the
    # scheduler to the tasks of ``tasks`` unless an admin set one of its own.
    limits: Annotated[list[DeclaredLimit], msgspec.Meta(max_length=MAX_SLOTS)] = []
    # Of ``slots``, how many hold prefetched jobs waiting for one of the others (``corral
    # worker --prefetch``): shown by the status, nothing else (the credits are ``slots``).
    prefetch: Annotated[int, msgspec.Meta(ge=0, le=MAX_SLOTS)] = 0


class Submit(Message, frozen=True):
    request_id: RequestId
    jobs: Annotated[list[JobSpec], msgspec.Meta(min_length=1, max_length=100_000)]
    # Non-zero: also wait for these jobs, as a Wait with this request id would, saving
    # the client a round trip (Outcomes under this id follow the Submitted reply).
    wait_request_id: RequestId = 0
    # Refuse (code "no_worker") a job whose task no connected worker has, instead of
    # letting it wait for one.
    require_worker: bool = False


class SubmitWorkflow(Message, frozen=True):
    """A DAG of named steps, created atomically: all of them or none."""

    request_id: RequestId
    name: Annotated[str, msgspec.Meta(max_length=256)]
    steps: Annotated[list[StepSpec], msgspec.Meta(min_length=1, max_length=100_000)]
    idempotency_key: Annotated[str, msgspec.Meta(min_length=1, max_length=512)] | None = None


class GetWorkflow(Message, frozen=True):
    request_id: RequestId
    workflow_id: Annotated[int, msgspec.Meta(ge=1, le=2**62)]


class Wait(Message, frozen=True):
    request_id: RequestId
    job_ids: Annotated[list[JobId], msgspec.Meta(min_length=1, max_length=1_000_000)]


class GetStatus(Message, frozen=True):
    request_id: RequestId


class Results(Message, frozen=True):
    """Finished executions, and the slots freed: one per result unless ``credits`` says
    otherwise (a timed-out handler's thread may stay busy after its result is sent; its
    slot is returned later by a Results frame with no results and ``credits=1``)."""

    results: Annotated[list[JobResult], msgspec.Meta(max_length=100_000)]
    credits: Annotated[int, msgspec.Meta(ge=-1, le=MAX_SLOTS)] = -1  # -1: one per result


class Heartbeat(Message, frozen=True):
    """I am alive, and these (job_id, token) leases are still mine."""

    leases: Annotated[list[tuple[int, int]], msgspec.Meta(max_length=MAX_SLOTS)] = []
    sent_at: float = 0.0  # the worker's monotonic clock; echoed in HeartbeatAck
    # The ``seq`` of the last Assign frame the worker had processed when it sent this:
    # a lease granted in that frame or before, and not listed, is not held (reclaim it).
    assign_seq: Annotated[int, msgspec.Meta(ge=0)] = 0
    # Listed jobs the worker has not started yet (prefetched: ``Worker(prefetch=...)``):
    # their timeout backstop counts from this heartbeat, not from their assignment.
    waiting: Annotated[list[int], msgspec.Meta(max_length=MAX_SLOTS)] = []


class Progress(Message, frozen=True):
    """Latest progress of running jobs: (job_id, token, fraction 0..1, message)."""

    updates: Annotated[
        list[
            tuple[
                int,
                int,
                Annotated[float, msgspec.Meta(ge=0, le=1)],
                Annotated[str, msgspec.Meta(max_length=1024)],
            ]
        ],
        msgspec.Meta(max_length=10_000),
    ]


class Subscribe(Message, frozen=True):
    """Stream events (all, or one job's) to this client as Events frames."""

    request_id: RequestId
    job_id: JobId | None = None


class EventsAck(Message, frozen=True):
    """The subscriber has taken one Events frame: it may be sent one more."""

    request_id: RequestId


class Unsubscribe(Message, frozen=True):
    request_id: RequestId


class Drain(Message, frozen=True):
    """A worker stopping: send it no new jobs; it finishes what it holds, then says Goodbye."""


class Goodbye(Message, frozen=True):
    """A worker leaving: the leases it still holds (a hard stop), or none. Any other lease
    granted to it it never started (its Assign crossed the Goodbye, or was dropped): those
    are re-queued without counting an attempt. None: an older worker that does not say."""

    leases: Annotated[list[tuple[int, int]], msgspec.Meta(max_length=MAX_SLOTS)] | None = None


ToScheduler = (
    ClientHello
    | WorkerHello
    | Submit
    | Wait
    | GetStatus
    | GetJob
    | Results
    | Heartbeat
    | Drain
    | Goodbye
    | CancelJobs
    | ListJobs
    | Requeue
    | SubmitWorkflow
    | GetWorkflow
    | Progress
    | Subscribe
    | EventsAck
    | Unsubscribe
    | SetLimit
    | RemoveLimit
    | ListLimits
    | AddSchedule
    | ListSchedules
    | ChangeSchedule
)

# ---------------------------------------------------------- from the scheduler


class Welcome(Message, frozen=True):
    protocol: int
    heartbeat_interval: float = 1.0
    instance: str = ""  # changes when the scheduler process restarts
    lease: float = 5.0  # a worker that hears no HeartbeatAck for this long fences itself
    term: int = 0  # the leader's term (PostgreSQL with standbys); 0: a single scheduler
    # Which database it serves: an id made when the database was created (job ids and
    # fencing tokens mean something only within one), and how the scheduler names it.
    database_id: str = ""
    database: str = ""


class Submitted(Message, frozen=True):
    request_id: int
    job_ids: list[int]
    existing: list[bool] = []


class Outcomes(Message, frozen=True):
    request_id: int
    outcomes: list[JobOutcome]


class StatusReply(Message, frozen=True):
    request_id: int
    status: StatusView


class Assign(Message, frozen=True):
    assignments: list[Assignment]
    # Numbers the Assign frames sent to one worker connection (1, 2, ...); the worker
    # echoes the last one it processed in its heartbeats (Heartbeat.assign_seq).
    seq: int = 0
    # The worker-clock ``sent_at`` of the newest heartbeat (or hello) the scheduler had
    # heard from this worker when it granted these leases: they are valid until
    # lease_basis + lease by the worker's own clock, and nothing may start past that.
    lease_basis: float = 0.0


class ResultsAck(Message, frozen=True):
    """Committed (or refused as stale): the worker may forget these results."""

    job_ids: list[int]
    refused: list[int] = []


class WorkflowSubmitted(Message, frozen=True):
    request_id: int
    workflow_id: int
    step_ids: dict[str, int]
    existing: bool = False  # its idempotency key named a workflow submitted before


class WorkflowReply(Message, frozen=True):
    request_id: int
    workflow: WorkflowView | None


class Events(Message, frozen=True):
    """Events for a subscription; ``dropped`` were lost since the last frame because the
    subscriber fell behind (its buffer is bounded so it can never slow the scheduler)."""

    request_id: int
    events: list[Event]
    dropped: int = 0


class HeartbeatAck(Message, frozen=True):
    """Your heartbeat sent at ``sent_at`` (your clock) renewed your leases."""

    sent_at: float


class StopJob(Message, frozen=True):
    """Stop running this job now (cancelled, or your lease on it is stale)."""

    job_id: int
    token: int
    reason: str


class NotLeader(Message, frozen=True):
    """The scheduler that got the frame is a standby: nothing was done. ``leader`` is the
    address workers and clients should use instead (empty while no leader is known, e.g.
    during an election), ``term`` the leader's term. Answers every hello and request."""

    request_id: int = 0
    leader: str = ""
    term: int = 0
    database_id: str = ""  # the database the standby shares with the leader (as Welcome's)


class ErrorReply(Message, frozen=True):
    """A request was refused; nothing changed. ``code`` is stable, ``message`` is for humans."""

    code: str
    message: str
    request_id: int = 0
    # Seconds after which the same request would pass (a submission over its client's
    # rate: ``--max-submit-rate``); 0: retrying will not help by itself.
    retry_after: Annotated[float, msgspec.Meta(ge=0.0, le=3600.0)] = 0.0


FromScheduler = (
    Welcome
    | Submitted
    | Outcomes
    | StatusReply
    | JobReply
    | Assign
    | ResultsAck
    | ErrorReply
    | NotLeader
    | HeartbeatAck
    | StopJob
    | CancelReply
    | JobList
    | RequeueReply
    | WorkflowSubmitted
    | WorkflowReply
    | Events
    | LimitsReply
    | ScheduleReply
)

# ------------------------------------------------------------ codecs, built once

_encoder = msgspec.msgpack.Encoder()
_request_decoder = msgspec.msgpack.Decoder(ToScheduler)
_reply_decoder = msgspec.msgpack.Decoder(FromScheduler)

encode = _encoder.encode

# The tags of the messages that carry a request id first: only their refusals echo one.
REQUEST_TAGS = frozenset(
    kind.__struct_config__.tag
    for kind in get_args(ToScheduler)
    if kind.__struct_fields__[:1] == ("request_id",)
)


def decode_request(frame: bytes) -> ToScheduler:
    """Decode an untrusted frame sent to the scheduler, or raise BadFrame."""
    check_size(frame, REQUEST_TAGS)
    try:
        message: ToScheduler = _request_decoder.decode(frame)
        return message
    except msgspec.ValidationError as exc:
        raise BadFrame(
            "invalid",
            f"message does not match the protocol: {exc}",
            request_id_of(frame, REQUEST_TAGS),
        ) from None
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        # msgspec reports a malformed UTF-8 string as UnicodeDecodeError.
        text = f"frame is not valid msgpack: {exc}"
        raise BadFrame("bad_frame", text, request_id_of(frame, REQUEST_TAGS)) from None
    except RecursionError:
        text = "frame is nested too deeply to decode"
        raise BadFrame("bad_frame", text, request_id_of(frame, REQUEST_TAGS)) from None


def decode_reply(frame: bytes) -> FromScheduler:
    """Decode a frame sent by the scheduler (clients and workers)."""
    check_size(frame)
    try:
        reply: FromScheduler = _reply_decoder.decode(frame)
        return reply
    except (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise BadFrame("bad_frame", f"unreadable frame from scheduler: {exc}") from None
    except RecursionError:
        raise BadFrame("bad_frame", "frame from scheduler is nested too deeply") from None
