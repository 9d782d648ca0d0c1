"""The payloads of the wire protocol: the limits every frame respects, the user-data
helpers (``pack``/``unpack``, shape checks, ``truncate_error``) and the Structs that travel
inside messages (a job spec, an assignment, a result). ``transport.protocol`` re-exports
all of it; import from there.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Protocol

import msgspec

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
# A job may wait up to a year to start: ``delay`` seconds from its submission (by the
# scheduler's clock), or until ``run_at`` (a Unix time, before 2100).
Delay = Annotated[float, msgspec.Meta(ge=0, le=366 * 24 * 3600)]
UnixTime = Annotated[float, msgspec.Meta(ge=0, le=4_102_444_800)]


class _CarriesPayload(Protocol):
    @property
    def args(self) -> msgspec.Raw | bytes: ...
    @property
    def kwargs(self) -> msgspec.Raw | bytes: ...


def payload_bytes(job: _CarriesPayload) -> int:
    """The bytes of a job's arguments (its encoded args and kwargs): what the payload limit
    and the per-client allowance of bytes count, for a spec and a held job alike."""
    return len(job.args) + len(job.kwargs)


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
    # Not before: the later of submission + delay and run_at (0: at once).
    delay: Delay = 0.0
    run_at: UnixTime = 0.0
    # At most ``max_concurrent`` jobs of one key run at once (None: no cap; the key may
    # still name a rate limit). See README "Concurrency keys and rate limits".
    concurrency_key: Annotated[str, msgspec.Meta(min_length=1, max_length=256)] | None = None
    max_concurrent: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] | None = None


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
    # The worker stopped it itself: its lease lapsed with no heartbeat acknowledged (the
    # scheduler away, or this worker paused). A scheduler that took over the lease across
    # a restart or failover counts no attempt for it.
    fenced: bool = False


class JobOutcome(msgspec.Struct, frozen=True, array_like=True):
    """The final word on a job, sent to whoever waits for it."""

    job_id: int
    status: str
    result: msgspec.Raw = NONE_RAW
    error: str | None = None


_encoder = msgspec.msgpack.Encoder()


def truncate_error(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    """``text`` cut to ``limit`` characters, keeping its head and its tail (a traceback's
    last line names the exception), with a marker saying how much was left out."""
    if len(text) <= limit:
        return text
    marker = f"\n... [{len(text) - limit + 100} characters cut] ...\n"
    keep = limit - len(marker)
    head = keep // 4
    return text[:head] + marker + text[len(text) - (keep - head) :]


# The shapes' first bytes (fix, 16- and 32-bit forms), and the usual values themselves:
# ``[]`` and ``{}`` compare in one step (a decoded ``Raw`` viewed byte by byte costs more).
_ARRAY_FIRST = frozenset([*range(0x90, 0xA0), 0xDC, 0xDD])
_MAP_FIRST = frozenset([*range(0x80, 0x90), 0xDE, 0xDF])


def is_msgpack_array(raw: msgspec.Raw) -> bool:
    """Cheap shape check of a raw msgpack value: an array (fixarray, array16, array32)."""
    if raw == EMPTY_ARGS:
        return True
    view = memoryview(raw)
    return bool(view.nbytes) and view[0] in _ARRAY_FIRST


def is_msgpack_map(raw: msgspec.Raw) -> bool:
    """Cheap shape check of a raw msgpack value: a map (fixmap, map16, map32)."""
    if raw == EMPTY_KWARGS:
        return True
    view = memoryview(raw)
    return bool(view.nbytes) and view[0] in _MAP_FIRST


def pack(value: Any) -> msgspec.Raw:
    """Encode a user value into the Raw form used for args, kwargs and results."""
    return msgspec.Raw(_encoder.encode(value))


def unpack(raw: msgspec.Raw | bytes) -> Any:
    """Decode a Raw user value back to Python objects."""
    return msgspec.msgpack.decode(raw)


def unpack_for_view(raw: msgspec.Raw | bytes) -> Any:
    """A user value as plain JSON values, for the views that show it (``corral job``,
    ``--json`` output, the dashboard): never raises. msgpack holds what JSON cannot (a map
    keyed by arrays, extension values, bytes, nesting deeper than a decoder's stack): those
    parts become text (their ``repr``), and a value that cannot be decoded or shown at all
    becomes one string saying so. One client's odd value must not break everyone's list."""
    try:
        value = msgspec.msgpack.decode(raw, ext_hook=_ext_for_view)
    except (msgspec.DecodeError, ValueError, RecursionError) as exc:
        return f"<a value that cannot be decoded: {exc}>"
    try:
        return json.loads(json.dumps(value, default=repr, ensure_ascii=False))
    except (TypeError, ValueError, RecursionError):
        pass
    try:
        return repr(value)
    except RecursionError:
        return "<a value nested too deeply to show>"


def _ext_for_view(code: int, data: memoryview) -> str:
    return f"<msgpack extension {code}: {bytes(data).hex()}>"
