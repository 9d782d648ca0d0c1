"""The wire protocol: every frame between scheduler, workers and clients.

Owns the message Structs, the two tagged unions (what the scheduler accepts and
what it sends), and the encoder/decoders, built once. Every frame that arrives
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

from typing import Annotated, Any

import msgspec

from transport.errors import BadFrame

PROTOCOL_VERSION = 1

# 8 MiB: a bulk submit of 10,000 small jobs is ~1 MiB; anything near this
# limit is a mistake or an attack, and is refused with an error reply.
MAX_FRAME_BYTES = 8 * 1024 * 1024
# A job's arguments must leave room in an Assign frame for the rest of the assignment
# (task name, key, parents' results are checked separately), so a job accepted at submit
# can always be sent to a worker. 16 KiB is far more than the fixed fields take.
MAX_JOB_PAYLOAD_BYTES = MAX_FRAME_BYTES - 16 * 1024
# Error texts (tracebacks) are cut to this many characters by their sender, keeping the
# head and the tail, where the exception line is.
MAX_ERROR_CHARS = 65_536
# The most leases one worker may hold, claim or heartbeat (its slots are bounded alike),
# so no single frame can make the scheduler do unbounded work.
MAX_SLOTS = 10_000

EMPTY_ARGS = msgspec.Raw(b"\x90")  # msgpack []
EMPTY_KWARGS = msgspec.Raw(b"\x80")  # msgpack {}
NONE_RAW = msgspec.Raw(b"\xc0")  # msgpack nil

TaskName = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
QueueName = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
Priority = Annotated[int, msgspec.Meta(ge=-1_000_000, le=1_000_000)]
JobId = Annotated[int, msgspec.Meta(ge=1, le=2**62)]
RequestId = Annotated[int, msgspec.Meta(ge=0, le=2**62)]
Retries = Annotated[int, msgspec.Meta(ge=0, le=1000)]
Seconds = Annotated[float, msgspec.Meta(gt=0, le=7 * 24 * 3600)]


class Message(msgspec.Struct, frozen=True, array_like=True, tag=True, omit_defaults=False):
    """Base of every wire message; the class name is the tag."""


# ---------------------------------------------------------------- payload types


class Backoff(msgspec.Struct, frozen=True, array_like=True):
    """Retry delay = min(cap, base * factor ** (attempt - 1)) * uniform(0.5, 1)."""

    base: Annotated[float, msgspec.Meta(ge=0, le=86400)]
    factor: Annotated[float, msgspec.Meta(ge=1, le=100)]
    cap: Annotated[float, msgspec.Meta(ge=0, le=7 * 86400)]


class JobSpec(msgspec.Struct, frozen=True, array_like=True):
    """What a client asks to run."""

    task: TaskName
    args: msgspec.Raw = EMPTY_ARGS
    kwargs: msgspec.Raw = EMPTY_KWARGS
    priority: Priority = 0
    queue: QueueName = "default"
    depends_on: list[JobId] = []
    max_retries: Retries = 3
    idempotency_key: Annotated[str, msgspec.Meta(min_length=1, max_length=512)] | None = None
    timeout: Seconds | None = None
    backoff: Backoff | None = None  # None: the scheduler's default


class StepSpec(msgspec.Struct, frozen=True, array_like=True):
    """One named step of a workflow: a job, and the steps it runs after."""

    name: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
    job: JobSpec
    after: list[Annotated[str, msgspec.Meta(min_length=1, max_length=256)]] = []


class ParentResult(msgspec.Struct, frozen=True, array_like=True):
    """A succeeded parent's result, handed to its child (``context().parents``)."""

    job_id: int
    step: str | None
    result: msgspec.Raw


class Assignment(msgspec.Struct, frozen=True, array_like=True):
    """One job leased to one worker under one fencing token."""

    job_id: int
    token: int
    task: str
    args: msgspec.Raw
    kwargs: msgspec.Raw
    attempt: int
    idempotency_key: str | None = None
    timeout: float | None = None
    parents: list[ParentResult] = []
    step: str | None = None
    workflow_id: int | None = None


class JobResult(msgspec.Struct, frozen=True, array_like=True):
    """A worker's report of one execution."""

    job_id: JobId
    token: Annotated[int, msgspec.Meta(ge=0)]
    ok: bool
    result: msgspec.Raw = NONE_RAW
    error: Annotated[str, msgspec.Meta(max_length=MAX_ERROR_CHARS)] | None = None
    # False: a retry cannot succeed (unknown task, arguments that do not bind, an exception
    # the task does not retry, its own retry limit reached): the job fails at once.
    retry: bool = True


class JobOutcome(msgspec.Struct, frozen=True, array_like=True):
    """The final word on a job, sent to whoever waits for it."""

    job_id: int
    status: str
    result: msgspec.Raw = NONE_RAW
    error: str | None = None


class AttemptView(msgspec.Struct, frozen=True):
    """One finished attempt of a job."""

    token: int
    worker: str | None
    started_at: float | None
    finished_at: float | None
    outcome: str  # "succeeded", "error", "lost", "cancelled"
    error: str | None = None


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


class QueueView(msgspec.Struct, frozen=True):
    """Ready jobs in one queue, by priority band (high > 0, normal = 0, low < 0)."""

    ready: int
    high: int = 0
    normal: int = 0
    low: int = 0
    waiting_for_worker: int = 0  # ready jobs no connected worker may run (task not announced)


class StatusView(msgspec.Struct, frozen=True):
    jobs: dict[str, int]
    workers: list[WorkerView]
    strategy: str
    counters: dict[str, int] = {}  # e.g. refused_results: stale results refused
    queues: dict[str, QueueView] = {}
    completed_last_minute: int = 0  # jobs that ended (any final state) in the last 60 s
    throughput_per_s: float = 0.0  # SUCCEEDED per second over the last 60 s
    dead_letters: int = 0  # jobs in FAILED


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


class GetJob(Message, frozen=True):
    request_id: RequestId
    job_id: JobId


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


class CancelJobs(Message, frozen=True):
    request_id: RequestId
    job_ids: Annotated[list[JobId], msgspec.Meta(min_length=1, max_length=100_000)]


class ListJobs(Message, frozen=True):
    request_id: RequestId
    status: Annotated[str, msgspec.Meta(max_length=32)] | None = None
    queue: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 100


class Requeue(Message, frozen=True):
    """Re-queue dead-lettered (FAILED) jobs: these ids, or every one with ``all_failed``."""

    request_id: RequestId
    job_ids: Annotated[list[JobId], msgspec.Meta(max_length=100_000)] = []
    all_failed: bool = False


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
    """A worker leaving cleanly, holding no jobs."""


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
)

# ---------------------------------------------------------- from the scheduler


class Welcome(Message, frozen=True):
    protocol: int
    heartbeat_interval: float = 1.0
    instance: str = ""  # changes when the scheduler process restarts
    lease: float = 5.0  # a worker that hears no HeartbeatAck for this long fences itself


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


class JobReply(Message, frozen=True):
    request_id: int
    job: JobView | None


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


class CancelReply(Message, frozen=True):
    request_id: int
    statuses: list[tuple[int, str]]  # (job_id, status after the request)


class JobList(Message, frozen=True):
    request_id: int
    jobs: list[JobView]


class RequeueReply(Message, frozen=True):
    request_id: int
    job_ids: list[int]
    skipped: list[tuple[int, str]] = []  # (job_id, why it was not re-queued)


class ErrorReply(Message, frozen=True):
    """A request was refused; nothing changed. ``code`` is stable, ``message`` is for humans."""

    code: str
    message: str
    request_id: int = 0


FromScheduler = (
    Welcome
    | Submitted
    | Outcomes
    | StatusReply
    | JobReply
    | Assign
    | ResultsAck
    | ErrorReply
    | HeartbeatAck
    | StopJob
    | CancelReply
    | JobList
    | RequeueReply
    | WorkflowSubmitted
    | WorkflowReply
    | Events
)

# ------------------------------------------------------------ codecs, built once

_encoder = msgspec.msgpack.Encoder()
_request_decoder = msgspec.msgpack.Decoder(ToScheduler)
_reply_decoder = msgspec.msgpack.Decoder(FromScheduler)

encode = _encoder.encode


def _check_size(frame: bytes) -> None:
    if len(frame) > MAX_FRAME_BYTES:
        raise BadFrame(
            "too_large",
            f"frame of {len(frame)} bytes exceeds the {MAX_FRAME_BYTES}-byte limit",
            _request_id_of(frame),
        )


def _request_id_of(frame: bytes) -> int:
    """Best effort, without decoding the frame: the request id of a frame that was
    refused, so the error reply reaches the caller waiting on it. Requests are msgpack
    arrays ``[tag, request_id, ...]``; only their first bytes are read."""
    view = memoryview(frame)
    try:
        head = view[0]
        if 0x90 <= head <= 0x9F:
            pos = 1
        elif head == 0xDC:
            pos = 3
        elif head == 0xDD:
            pos = 5
        else:
            return 0
        tag = view[pos]
        if 0xA0 <= tag <= 0xBF:  # fixstr
            pos += 1 + (tag - 0xA0)
        elif tag == 0xD9:  # str8
            pos += 2 + view[pos + 1]
        else:
            return 0
        first = view[pos]
        if first <= 0x7F:  # positive fixint
            return int(first)
        width = {0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8}.get(first)
        if width is None:
            return 0
        value = int.from_bytes(view[pos + 1 : pos + 1 + width], "big")
        return value if value < 2**62 and len(view) >= pos + 1 + width else 0
    except IndexError:
        return 0


def decode_request(frame: bytes) -> ToScheduler:
    """Decode an untrusted frame sent to the scheduler, or raise BadFrame."""
    _check_size(frame)
    try:
        message: ToScheduler = _request_decoder.decode(frame)
        return message
    except msgspec.ValidationError as exc:
        raise BadFrame(
            "invalid", f"message does not match the protocol: {exc}", _request_id_of(frame)
        ) from None
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        # msgspec reports a malformed UTF-8 string as UnicodeDecodeError.
        raise BadFrame("bad_frame", f"frame is not valid msgpack: {exc}") from None
    except RecursionError:
        raise BadFrame("bad_frame", "frame is nested too deeply to decode") from None


def decode_reply(frame: bytes) -> FromScheduler:
    """Decode a frame sent by the scheduler (clients and workers)."""
    _check_size(frame)
    try:
        reply: FromScheduler = _reply_decoder.decode(frame)
        return reply
    except (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise BadFrame("bad_frame", f"unreadable frame from scheduler: {exc}") from None
    except RecursionError:
        raise BadFrame("bad_frame", "frame from scheduler is nested too deeply") from None


def truncate_error(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    """``text`` cut to ``limit`` characters, keeping its head and its tail (a traceback's
    last line names the exception), with a marker saying how much was left out."""
    if len(text) <= limit:
        return text
    marker = f"\n... [{len(text) - limit + 100} characters cut] ...\n"
    keep = limit - len(marker)
    head = keep // 4
    return text[:head] + marker + text[len(text) - (keep - head) :]


def is_msgpack_array(raw: msgspec.Raw) -> bool:
    """Cheap shape check of a raw msgpack value: an array (fixarray, array16, array32)."""
    first = memoryview(raw)[:1].tobytes()
    return bool(first) and (0x90 <= first[0] <= 0x9F or first[0] in (0xDC, 0xDD))


def is_msgpack_map(raw: msgspec.Raw) -> bool:
    """Cheap shape check of a raw msgpack value: a map (fixmap, map16, map32)."""
    first = memoryview(raw)[:1].tobytes()
    return bool(first) and (0x80 <= first[0] <= 0x8F or first[0] in (0xDE, 0xDF))


def pack(value: Any) -> msgspec.Raw:
    """Encode a user value into the Raw form used for args, kwargs and results."""
    return msgspec.Raw(_encoder.encode(value))


def unpack(raw: msgspec.Raw | bytes) -> Any:
    """Decode a Raw user value back to Python objects."""
    return msgspec.msgpack.decode(raw)
