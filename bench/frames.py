"""Hostile frames for fuzzing the scheduler (issue 16): a seeded generator of everything a
peer can put on the wire, and the rule that says which of those frames must change nothing.

Kinds (``KINDS``): random bytes; truncated and bit-flipped valid frames of every message
type in ``transport.protocol``; valid msgpack of the wrong shape; huge declared lengths;
deep nesting; frames just under, at and over ``MAX_FRAME_BYTES``; multi-part messages;
valid frames with hostile values (ids out of range, huge ints, NaN and infinities,
strings with NUL, enormous id lists, workflow cycles, unknown tasks, leases and results
forged for other workers' jobs); and short sequences (a request before any hello, hellos
with other protocol versions). Each draw is a ``Shot``: its kind and the messages to
send, each a list of ZeroMQ parts (one, except multi-part ones).

A frame kept by the generator is either garbage (``transport.protocol.decode_request``
refuses it) or ``harmless``: a valid frame whose right answer changes nothing a fuzz run
checks (reads; cancels naming no job; submissions the scheduler must refuse; worker
frames for leases the sender does not hold). A mutant that decodes into anything else
(a bit flip can turn a frame into a valid Submit) is drawn again, so every job in the
store after a run came from the honest client.

Seeded ``random.Random``, not hypothesis: a bench run of 100,000 frames wants a fixed
stream it can replay from ``--seed``, at tens of thousands of frames a second, without
hypothesis's shrinking machinery (which needs a property per example, and a live
scheduler is one example). The suite's decoder test draws from hypothesis strategies and
from this generator, seeded by hypothesis.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from transport import protocol as wire
from transport.errors import BadFrame

# No run creates 2**40 jobs: an id at or above this names no job, now or later.
FAR_ID = 2**40
# The queue the honest work of a fuzz run is on; no kept frame may make a worker of it.
VALID_QUEUE = "valid"
# A fuzz peer's worker name starts with this, so it never takes over a real worker's
# leases by name (without keys, a name is all a worker is; see README "Security").
FUZZ_NAME = "fuzz"

# (kind, weight): frames just under or over the limit weigh 8 MiB each, so they are rare.
WEIGHTS = {
    "random": 14,
    "truncated": 14,
    "bitflip": 20,
    "wrong_shape": 12,
    "huge_length": 6,
    "deep": 4,
    "size_edge": 0.05,
    "multipart": 4,
    "hostile": 22,
    "sequence": 4,
}
KINDS = tuple(WEIGHTS)
HOSTILE_INTS = (0, -1, -(2**63), 2**62, 2**62 + 1, 2**63 - 1, 2**64 - 1, FAR_ID)
HOSTILE_FLOATS = (math.nan, math.inf, -math.inf, -0.0, 1e308, -1.0, 5e-324)
HOSTILE_STRS = ("", "\x00", "a\x00b", "é" * 300, "x" * 70_000, "../../etc", "default\x00")
_encode = msgspec.msgpack.encode


@dataclass(frozen=True)
class Shot:
    """One draw: what kind of garbage, and the messages (each a list of parts) to send."""

    kind: str
    messages: list[list[bytes]]


def as_received(parts: list[bytes]) -> bytes:
    """What the gateway decodes of a DEALER message of these parts: a multi-part message
    arrives as an empty frame (``transport.zeromq.ZmqServer.recv_batch``)."""
    return parts[0] if len(parts) == 1 else b""


def refused_at_gateway(frame: bytes) -> bool:
    """Whether the gateway refuses this frame itself and counts it in ``bad_frames``: it
    does not decode, or it is a hello in another protocol version."""
    try:
        message = wire.decode_request(frame)
    except BadFrame:
        return True
    hello = isinstance(message, wire.ClientHello | wire.WorkerHello)
    return hello and message.protocol != wire.PROTOCOL_VERSION  # type: ignore[union-attr]


def _workflow_refused(steps: list[wire.StepSpec]) -> bool:
    """A duplicate step, an unknown or repeated ``after``, or a cycle: refused whole."""
    names = [s.name for s in steps]
    if len(set(names)) != len(names):
        return True
    after = {s.name: s.after for s in steps}
    if any(a not in after or len(set(s.after)) != len(s.after) for s in steps for a in s.after):
        return True
    done: set[str] = set()
    while len(done) < len(after):  # Kahn: a round that frees nothing leaves a cycle
        free = {n for n, deps in after.items() if n not in done and set(deps) <= done}
        if not free:
            return True
        done |= free
    return False


def harmless(frame: bytes) -> bool:
    """Whether a correct scheduler answers this frame, from any fuzz peer, without changing
    what a fuzz run checks: the jobs in the store, their leases and attempts."""
    try:
        message = wire.decode_request(frame)
    except BadFrame:
        return True
    match message:
        case wire.WorkerHello(protocol=version, name=name, queues=queues):
            if version != wire.PROTOCOL_VERSION:
                return True
            return name.startswith(FUZZ_NAME) and VALID_QUEUE not in queues and bool(queues)
        case wire.Submit(jobs=jobs):
            return any(d >= FAR_ID for job in jobs for d in job.depends_on)
        case wire.SubmitWorkflow(steps=steps):
            return _workflow_refused(steps)
        case wire.CancelJobs(job_ids=ids) | wire.Requeue(job_ids=ids):
            return all(i >= FAR_ID for i in ids)
    return True  # reads, subscriptions, hellos as a client, other workers' leases


def valid_frames(rng: random.Random, known_ids: int) -> list[wire.Message]:
    """One valid message of every type the scheduler accepts, with plausible values; the
    job ids among ``1..known_ids`` (the honest client's jobs)."""
    job = rng.randint(1, max(1, known_ids))
    token = rng.randint(1, 3)
    spec = wire.JobSpec("record", wire.pack([rng.random()]), queue=VALID_QUEUE)
    far = wire.JobSpec("record", depends_on=[FAR_ID + rng.randrange(1000)])
    steps = [wire.StepSpec("a", spec), wire.StepSpec("b", spec, ["a"])]
    v = wire.PROTOCOL_VERSION
    rid = rng.randrange(2**32)
    return [
        wire.ClientHello(v),
        wire.WorkerHello(v, f"{FUZZ_NAME}-{rng.randrange(9)}", 2, ["fuzz"], ["fuzz.none"]),
        wire.Submit(rid, [spec, far]),
        wire.SubmitWorkflow(rid, "wf", steps, "key"),
        wire.GetWorkflow(rid, rng.randint(1, 4)),
        wire.Wait(rid, [job, job + 1]),
        wire.GetStatus(rid),
        wire.GetJob(rid, job),
        wire.Results([wire.JobResult(job, token, rng.random() < 0.5, wire.pack("forged"))]),
        wire.Heartbeat([(job, token)], rng.random(), rng.randrange(5)),
        wire.Drain(),
        wire.Goodbye([(job, token)]),
        wire.CancelJobs(rid, [job]),
        wire.ListJobs(rid, "SUCCEEDED", VALID_QUEUE, 10),
        wire.Requeue(rid, [job], False),
        wire.Progress([(job, token, 0.5, "half")]),
        wire.Subscribe(rid, job),
        wire.EventsAck(rid),
        wire.Unsubscribe(rid),
    ]


def valid_replies(rng: random.Random) -> list[wire.Message]:
    """One valid message of every type the scheduler sends (for ``decode_reply``)."""
    raw = wire.pack(rng.random())
    view = wire.JobView(1, "t", "RUNNING", 0, "q", 1, 3, 1, "w", [], None, 0.0, None, None)
    status = wire.StatusView({"PENDING": 1}, [], "priority")
    event = wire.Event(1, 0.0, "job", 1, "RUNNING")
    workflow = wire.WorkflowView(1, "wf", 0.0, [])
    assignment = wire.Assignment(1, 1, "t", wire.EMPTY_ARGS, wire.EMPTY_KWARGS, 1)
    return [
        wire.Welcome(1, 0.2, "i", 1.0, 0, "db", "sqlite"),
        wire.Submitted(1, [1, 2], [False, True]),
        wire.Outcomes(1, [wire.JobOutcome(1, "SUCCEEDED", raw)]),
        wire.StatusReply(1, status),
        wire.JobReply(1, view),
        wire.Assign([assignment], 1, 0.5),
        wire.ResultsAck([1], [2]),
        wire.ErrorReply("bad_frame", "no", 3),
        wire.NotLeader(1, "tcp://x:1", 2, "db"),
        wire.HeartbeatAck(0.5),
        wire.StopJob(1, 1, "stale"),
        wire.CancelReply(1, [(1, "CANCELLED")]),
        wire.JobList(1, [view]),
        wire.RequeueReply(1, [1], [(2, "not failed")]),
        wire.WorkflowSubmitted(1, 1, {"a": 1}),
        wire.WorkflowReply(1, workflow),
        wire.Events(1, [event], 2),
    ]


def random_value(rng: random.Random, depth: int = 0) -> Any:
    """A random msgpack-able value: scalars of every type, and lists and maps of them."""
    pick = rng.randrange(12 if depth < 4 else 9)
    scalars: list[Callable[[], Any]] = [
        lambda: None,
        lambda: rng.random() < 0.5,
        lambda: rng.choice(HOSTILE_INTS),
        lambda: rng.randint(-1000, 1000),
        lambda: rng.choice(HOSTILE_FLOATS),
        lambda: rng.choice(HOSTILE_STRS[:4]),
        lambda: rng.choice([t.__name__ for t in TAGS]),
        lambda: rng.randbytes(rng.randrange(16)),
        lambda: msgspec.msgpack.Ext(rng.randrange(-128, 128), rng.randbytes(4)),
    ]
    if pick < len(scalars):
        return scalars[pick]()
    if pick == 9:
        return {str(rng.randrange(9)): random_value(rng, depth + 1) for _ in range(3)}
    return [random_value(rng, depth + 1) for _ in range(rng.randrange(6))]


TAGS = [type(m) for m in valid_frames(random.Random(0), 1)]
