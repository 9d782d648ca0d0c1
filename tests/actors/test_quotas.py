"""Per-client allowances (actors.scheduler.quotas, issue 16): what counts against them, the
refusals that name the limit, the event hub's caps and budget, and the gateway that stops
listening to a peer that keeps going over. Real sockets: tests/e2e/test_quotas.py."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from actors.config import SchedulerConfig
from actors.lifecycle import JobState
from actors.scheduler import events as hub_module
from actors.scheduler.events import EventHub
from actors.scheduler.gateway import BAN_SECONDS, STRIKES, Gateway
from actors.scheduler.jobs import JobTable
from actors.scheduler.messages import Publish, Send, SubscriptionRequest
from actors.scheduler.ops import Ops
from actors.scheduler.quotas import HeldJobs, Limits, Quotas
from tests.actors.test_gateway_order import Recording
from tests.helpers.recorder import Recorder
from transport import Identity
from transport import protocol as wire
from transport.curve import identity as identity_of


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def spec(nbytes: int = 0) -> wire.JobSpec:
    args = msgspec.msgpack.encode(["x" * nbytes]) if nbytes else b"\x90"
    return wire.JobSpec("t", msgspec.Raw(args))


# ------------------------------------------------------------------ jobs and bytes held


def test_jobs_in_flight_count_from_creation_until_their_end_is_settled() -> None:
    table = JobTable(SchedulerConfig())
    ops = Ops()
    a = table.create(spec(100), ops, owner="alice")
    table.create(spec(), ops, owner="bob")
    size = len(a.args) + len(a.kwargs)
    assert table.held.of("alice") == (1, size)
    table.move(a, JobState.QUEUED, ops)
    table.move(a, JobState.CANCELLED, ops)
    assert table.held.of("alice") == (1, size), "held until the end is committed"
    table.settle(a)
    assert table.held.of("alice") == (0, 0)
    table.settle(a)  # settling twice releases once
    assert table.held.of("alice") == (0, 0)
    assert table.held.of("bob")[0] == 1


def test_a_requeued_dead_letter_is_in_flight_again() -> None:
    table = JobTable(SchedulerConfig())
    ops = Ops()
    job = table.create(spec(), ops, owner="alice")
    for state in (JobState.QUEUED, JobState.RUNNING, JobState.FAILED):
        table.move(job, state, ops)
    table.settle(job)
    assert table.held.of("alice") == (0, 0)
    table.requeue_failed(job, ops)
    assert table.held.of("alice")[0] == 1


def test_live_jobs_loaded_at_start_up_count() -> None:
    first = JobTable(SchedulerConfig())
    ops = Ops()
    jobs = [first.create(spec(10), ops, owner="alice") for _ in range(3)]
    second = JobTable(SchedulerConfig())
    second.admit(jobs)
    assert second.held.of("alice") == first.held.of("alice")


def quotas(clock: Clock | None = None, **limits: Any) -> Quotas:
    return Quotas(Limits(**limits), HeldJobs(), clock or Clock())


def test_a_submission_past_the_jobs_in_flight_is_refused_naming_the_limit_and_flag() -> None:
    q = quotas(jobs=10)
    q.held.add("alice", 8, 0)
    assert q.submit_refusal("alice", 2, 0) is None
    text = q.submit_refusal("alice", 3, 0)
    assert text is not None
    assert "--max-jobs-in-flight" in text
    assert "10" in text
    assert q.submit_refusal("bob", 10, 0) is None, "another owner's allowance is its own"
    assert q.refused["jobs"] == 1


def test_argument_bytes_held_are_limited_per_owner() -> None:
    q = quotas(bytes=1000)
    q.held.add("alice", 1, 900)
    text = q.submit_refusal("alice", 1, 101)
    assert text is not None
    assert "--max-bytes-in-flight" in text
    assert q.submit_refusal("alice", 1, 100) is None


def test_the_submission_rate_is_a_bucket_of_one_seconds_worth() -> None:
    clock = Clock()
    q = quotas(clock, rate=100.0)
    assert q.submit_refusal("alice", 60, 0) is None
    assert q.submit_refusal("alice", 40, 0) is None
    text = q.submit_refusal("alice", 1, 0)
    assert text is not None
    assert "--max-submit-rate" in text
    assert "retry in" in text
    assert q.submit_refusal("bob", 100, 0) is None, "each owner has its own bucket"
    clock.now += 0.5
    assert q.submit_refusal("alice", 50, 0) is None
    assert q.submit_refusal("alice", 1, 0) is not None


def test_one_submission_larger_than_a_second_passes_on_a_full_bucket_and_owes_it() -> None:
    clock = Clock()
    q = quotas(clock, rate=100.0)
    assert q.submit_refusal("alice", 250, 0) is None
    clock.now += 1.0  # 100 tokens back: still 50 in debt
    assert q.submit_refusal("alice", 1, 0) is not None
    clock.now += 1.6
    assert q.submit_refusal("alice", 100, 0) is None


def test_waits_held_are_counted_until_answered() -> None:
    q = quotas(waits=5)
    assert q.wait_refusal(b"p", 5) is None
    q.waited(b"p", 5)
    text = q.wait_refusal(b"p", 1)
    assert text is not None
    assert "--max-waits" in text
    q.answered(b"p", 5)
    assert q.wait_refusal(b"p", 5) is None
    assert b"p" not in q.waits


# ------------------------------------------------------------------------- event hub


def hub(max_per_subject: int = 64) -> tuple[EventHub, list[tuple[str, Any]]]:
    log: list[tuple[str, Any]] = []
    events = EventHub()
    events.gateway = Recorder("gateway", log)
    events.scheduler = Recorder("scheduler", log)
    events.max_per_subject = max_per_subject
    events.subject = lambda peer: peer.split(b"|")[0]
    return events, log


def subscribe(peer: bytes, rid: int, job_id: int | None = None) -> SubscriptionRequest:
    return SubscriptionRequest(peer, wire.Subscribe(rid, job_id))


def sent(log: list[tuple[str, Any]]) -> list[Send]:
    return [m for name, m in log if name == "gateway" and isinstance(m, Send)]


async def test_a_key_past_its_subscriptions_is_refused_and_keeps_the_ones_it_has() -> None:
    events, log = hub(max_per_subject=3)
    for rid in range(3):
        await events.handle(subscribe(b"alice|conn%d" % rid, rid))
    await events.handle(subscribe(b"alice|conn9", 9))
    refusals = [s.message for s in sent(log) if isinstance(s.message, wire.ErrorReply)]
    assert [(r.code, r.request_id) for r in refusals] == [("quota", 9)]
    assert "--max-subscriptions" in refusals[0].message
    assert len(events.subscriptions) == 3
    await events.handle(subscribe(b"bob|conn", 1))
    assert len(events.subscriptions) == 4, "another key is not held back"


async def test_past_the_hub_limit_the_biggest_holder_loses_its_oldest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(hub_module, "MAX_SUBSCRIBERS", 10)
    events, _ = hub()
    await events.handle(subscribe(b"bob|c", 1))
    for rid in range(9):
        await events.handle(subscribe(b"mallory|c", rid))
    for rid in range(9, 30):
        await events.handle(subscribe(b"mallory|c", rid))
    held = [key for key in events.subscriptions]
    assert (b"bob|c", 1) in held, "a flood evicts the flooder's own"
    assert len(held) == 10


def job_events(count: int, message: str = "") -> Publish:
    return Publish([("job", i, "QUEUED", "q", "", 0, -1.0, message) for i in range(count)])


async def test_subscribers_that_never_read_share_one_budget(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(hub_module, "BUFFERED_BUDGET", 10_000)
    events, log = hub()
    for n in range(50):
        await events.handle(subscribe(b"p%d|c" % n, 1))
    for _ in range(20):
        await events.handle(job_events(1000))
    buffered = sum(len(s.buffer) for s in events.subscriptions.values())
    assert buffered <= 10_000
    in_flight = [s for s in sent(log) if isinstance(s.message, wire.Events)]
    assert len(in_flight) == 50 * hub_module.WINDOW, "a window each, then nothing"
    assert events.dropped > 0
    for sub in events.subscriptions.values():
        assert sub.dropped > 0, "each one is told what it missed in its next frame"


async def test_a_frame_of_events_stays_near_its_byte_size() -> None:
    events, log = hub()
    await events.handle(subscribe(b"p|c", 1))
    await events.handle(job_events(200, message="e" * 1000))
    frames = [s.message for s in sent(log) if isinstance(s.message, wire.Events)]
    assert frames
    assert all(len(wire.encode(f)) < 2 * hub_module.FRAME_BYTES for f in frames)
    assert len(frames) == hub_module.WINDOW


# -------------------------------------------------------------------------- gateway


class KeyedRecording(Recording):
    keyed = True

    def identity(self, peer: bytes) -> Identity | None:
        return identity_of(peer)


def gateway() -> tuple[Gateway, KeyedRecording, list[tuple[str, Any]]]:
    transport = KeyedRecording()
    gw = Gateway(transport, 1.0, "test")
    log: list[tuple[str, Any]] = []
    for name in ("scheduler", "dispatcher", "heartbeat", "events"):
        setattr(gw, name, Recorder(name, log))
    return gw, transport, log


def hello(gw: Gateway, peer: bytes) -> None:
    gw._route(peer, wire.encode(wire.ClientHello(wire.PROTOCOL_VERSION)), [])


def test_a_key_that_keeps_going_over_its_quota_is_not_heard_for_a_while(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gw, transport, log = gateway()
    mallory, other_conn, bob = b"client:M|1", b"client:M|2", b"client:B|1"
    for peer in (mallory, other_conn, bob):
        hello(gw, peer)
    for _ in range(STRIKES):
        gw._send(mallory, wire.ErrorReply("quota", "over", 1))
    log.clear()
    gw._route(mallory, wire.encode(wire.GetStatus(2)), [])
    gw._route(other_conn, wire.encode(wire.GetStatus(3)), [])
    gw._route(bob, wire.encode(wire.GetStatus(4)), [])
    assert [m.peer for name, m in log if name == "scheduler"] == [bob]
    assert gw.banned_frames == 2
    later = __import__("time").monotonic() + BAN_SECONDS + 1
    monkeypatch.setattr("actors.scheduler.gateway.time.monotonic", lambda: later)
    gw._route(mallory, wire.encode(wire.GetStatus(5)), [])
    replies = [m for peer, m in transport.sent if peer == mallory]
    assert isinstance(replies[-1], wire.ErrorReply)
    assert replies[-1].code == "hello_first"


def test_refusals_spread_over_time_are_no_strikes(monkeypatch: pytest.MonkeyPatch) -> None:
    gw, _, _log = gateway()
    now = [0.0]
    monkeypatch.setattr("actors.scheduler.gateway.time.monotonic", lambda: now[0])
    hello(gw, b"client:A|1")
    for _ in range(STRIKES * 3):
        now[0] += 1.0
        gw._send(b"client:A|1", wire.ErrorReply("quota", "over", 1))
    assert not gw.banned


def test_a_key_removed_while_connected_is_refused_from_then_on() -> None:
    gw, transport, log = gateway()
    roles = {"K": "client"}
    gw.role_of = roles.get
    hello(gw, b"client:K|1")
    gw._route(b"client:K|1", wire.encode(wire.GetStatus(1)), [])
    assert len([m for name, m in log if name == "scheduler"]) == 1
    del roles["K"]
    gw._route(b"client:K|1", wire.encode(wire.GetStatus(2)), [])
    gw._route(b"client:K|1", wire.encode(wire.ClientHello(wire.PROTOCOL_VERSION)), [])
    assert len([m for name, m in log if name == "scheduler"]) == 1
    codes = [m.code for _, m in transport.sent if isinstance(m, wire.ErrorReply)]
    assert codes == ["forbidden", "forbidden"]
    roles["K"] = "admin"  # moved to another role: its connections must come again
    gw._route(b"client:K|1", wire.encode(wire.GetStatus(3)), [])
    assert transport.sent[-1][1].code == "forbidden"  # type: ignore[attr-defined]


def test_refusals_are_in_the_metrics() -> None:
    from prometheus_client import generate_latest

    from actors.metrics import MetricsBoard, registry_for

    board = MetricsBoard()
    board.publish("scheduler", quotas(jobs=1).metrics() | {"quota_refused_rate": 2})
    board.publish("gateway", {"forbidden_frames": 3, "banned_frames": 4})
    board.publish("events", {"refused_subscriptions": 5})
    text = generate_latest(registry_for(board)).decode()
    assert 'corral_quota_refused_total{limit="rate"} 2.0' in text
    assert 'corral_quota_refused_total{limit="jobs"} 0.0' in text
    assert "corral_forbidden_frames_total 3.0" in text
    assert "corral_banned_frames_total 4.0" in text
    assert "corral_refused_subscriptions_total 5.0" in text
