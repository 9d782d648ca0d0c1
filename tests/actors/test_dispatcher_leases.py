"""The dispatcher's side of leases: hello is idempotent, adoption happens once, a leaving
worker's leases are released with the reason, credits follow Results.credits and never
exceed the slots, a hostile heartbeat costs one reply, unheld and overdue leases go back."""

from __future__ import annotations

from typing import Any

import msgspec

from actors.scheduler.messages import (
    Adopt,
    Adopted,
    FromWorker,
    Leased,
    LeasesEnded,
    Send,
    Silent,
    WorkerCredit,
    WorkerCredits,
    WorkerGone,
    WorkerLost,
    WorkerNames,
)
from tests.actors.test_dispatcher_batching import dispatcher_with_log, turn
from transport import Identity
from transport import protocol as wire


def hello(slots: int = 2, leases: list[tuple[int, int]] | None = None, **kw: Any) -> FromWorker:
    return FromWorker(b"w", wire.WorkerHello(1, "w", slots, leases=leases or [], **kw))


def assignment(job_id: int, token: int = 1, timeout: float | None = None) -> wire.Assignment:
    raw = msgspec.Raw(b"\x90")
    return wire.Assignment(job_id, token, "t", raw, raw, 1, timeout=timeout)


def sent(log: list[tuple[str, Any]], kind: type) -> list[Any]:
    return [m.message for who, m in log if who == "gateway" and isinstance(m.message, kind)]


def told(log: list[tuple[str, Any]], who: str, kind: type) -> list[Any]:
    return [m for name, m in log if name == who and isinstance(m, kind)]


def credits(log: list[tuple[str, Any]]) -> list[int]:
    out: list[int] = []
    for _, m in log:
        if isinstance(m, WorkerCredit):
            out.append(m.credit)
        elif isinstance(m, WorkerCredits):
            out += [g.credit for g in m.grants]
    return out


async def test_a_repeated_hello_keeps_the_worker_and_its_leases_and_adopts_once() -> None:
    dispatcher, log = dispatcher_with_log()
    await turn(dispatcher, hello(2, [(1, 4)], tasks=["a.x"]))
    [adopt] = told(log, "scheduler", Adopt)
    assert adopt.leases == [(1, 4)]
    await turn(dispatcher, Adopted(b"w", [(1, 4)], []))
    log.clear()
    for _ in range(20):
        await turn(dispatcher, hello(2, [(1, 4)], tasks=["a.x"]))
    assert told(log, "scheduler", Adopt) == [], "already held: not adopted again"
    assert told(log, "scheduler", WorkerLost) == [], "never dropped, never reclaimed"
    assert told(log, "strategy", WorkerGone) == []
    assert sent(log, wire.StopJob) == []
    assert len(sent(log, wire.Welcome)) == 20
    assert sum(credits(log)) == 0, "its credits are with the strategy already"
    assert dispatcher.workers[b"w"].running == {1: 4}


async def test_a_hello_reports_the_workers_tasks_to_the_strategy_and_the_scheduler() -> None:
    dispatcher, log = dispatcher_with_log()
    await turn(dispatcher, hello(3, tasks=["a.x", "a.y"]))
    [credit] = told(log, "strategy", WorkerCredit)
    assert (credit.credit, credit.tasks) == (3, frozenset({"a.x", "a.y"}))
    [names] = told(log, "scheduler", WorkerNames)
    assert (names.tasks, names.available) == (frozenset({"a.x", "a.y"}), True)


async def test_a_goodbye_while_holding_leases_releases_them_as_worker_stopped() -> None:
    dispatcher, log = dispatcher_with_log()
    await turn(dispatcher, hello(2))
    await turn(dispatcher, Leased([(b"w", assignment(1)), (b"w", assignment(2))]))
    log.clear()
    await turn(dispatcher, FromWorker(b"w", wire.Goodbye()))
    [lost] = told(log, "scheduler", WorkerLost)
    assert sorted(lost.job_ids) == [1, 2]
    assert lost.reason.startswith("worker stopped")
    assert "heartbeat" not in lost.reason
    [gone] = [m for m in told(log, "scheduler", WorkerNames)]
    assert not gone.available


async def test_credits_follow_results_credits_and_never_exceed_the_slots() -> None:
    dispatcher, log = dispatcher_with_log()
    await turn(dispatcher, hello(2))
    await turn(dispatcher, Leased([(b"w", assignment(1)), (b"w", assignment(2))]))
    log.clear()
    result = wire.JobResult(1, 1, False, error="timed out", retry=True)
    await turn(dispatcher, FromWorker(b"w", wire.Results([result], credits=0)))
    assert credits(log) == [], "its handler still runs: no slot freed yet"
    await turn(dispatcher, FromWorker(b"w", wire.Results([], credits=1)))
    assert credits(log) == [1]
    log.clear()
    await turn(dispatcher, FromWorker(b"w", wire.Results([], credits=500)))
    assert credits(log) == [], "one lease held plus one free credit fill both slots"
    await turn(dispatcher, FromWorker(b"w", wire.Results([wire.JobResult(2, 1, True)])))
    assert credits(log) == [1]


async def test_a_heartbeat_listing_more_leases_than_slots_is_refused_as_one_error() -> None:
    dispatcher, log = dispatcher_with_log()
    await turn(dispatcher, hello(2))
    log.clear()
    beat = wire.Heartbeat([(i, 1) for i in range(1, 10_001)], 1.0)
    await turn(dispatcher, FromWorker(b"w", beat))
    assert [type(m.message) for _, m in log if isinstance(m, Send)] == [wire.ErrorReply]
    assert dispatcher.refused_heartbeats == 1


async def test_stale_leases_in_a_heartbeat_are_stopped_and_logged_once(caplog: Any) -> None:
    dispatcher, log = dispatcher_with_log()
    await turn(dispatcher, hello(50))
    log.clear()
    await turn(dispatcher, FromWorker(b"w", wire.Heartbeat([(i, 1) for i in range(1, 51)], 1.0)))
    assert len(sent(log, wire.StopJob)) == 50
    assert len(sent(log, wire.HeartbeatAck)) == 1
    assert len([r for r in caplog.records if r.name == "corral.dispatcher"]) <= 1


async def test_a_lease_the_worker_does_not_hold_goes_back_with_its_slot() -> None:
    dispatcher, log = dispatcher_with_log()
    await turn(dispatcher, hello(1, sent_at=3.0))
    await turn(dispatcher, Leased([(b"w", assignment(1))]))
    [frame] = sent(log, wire.Assign)
    assert frame.lease_basis == 3.0
    log.clear()
    for at in (4.0, 5.0):  # the worker dropped it (stale): never listed
        await turn(dispatcher, FromWorker(b"w", wire.Heartbeat([], at, frame.seq)))
    [ended] = told(log, "scheduler", LeasesEnded)
    assert (ended.leases, ended.how) == ([(1, 1)], "unheld")
    assert credits(log) == [1]
    await turn(dispatcher, Leased([(b"w", assignment(2))]))
    assert sent(log, wire.Assign)[-1].lease_basis == 5.0


async def test_a_lease_whose_result_is_overdue_past_timeout_lease_and_grace_is_reclaimed() -> None:
    dispatcher, log = dispatcher_with_log()
    dispatcher.lease, dispatcher.grace = 0.0, 0.0
    await turn(dispatcher, hello(1))
    await turn(dispatcher, Leased([(b"w", assignment(1, timeout=1e-9))]))
    log.clear()
    await turn(dispatcher, FromWorker(b"w", wire.Heartbeat([(1, 1)], 1.0)))
    [ended] = told(log, "scheduler", LeasesEnded)
    assert (ended.leases, ended.how) == ([(1, 1)], "lost")
    assert "timeout" in ended.reason
    assert [(s.job_id, s.token) for s in sent(log, wire.StopJob)] == [(1, 1)]


async def test_frames_from_a_worker_not_connected_get_one_hello_first() -> None:
    dispatcher, log = dispatcher_with_log()
    for at in range(20):
        await turn(dispatcher, FromWorker(b"x", wire.Heartbeat([], float(at))))
        await turn(dispatcher, FromWorker(b"x", wire.Results([])))
    assert [e.code for e in sent(log, wire.ErrorReply)] == ["hello_first"]


async def test_an_adopted_lease_with_a_timeout_is_watched_by_the_backstop_too() -> None:
    dispatcher, log = dispatcher_with_log()
    dispatcher.lease, dispatcher.grace = 0.0, 0.0
    await turn(dispatcher, hello(1, [(1, 3)]))
    await turn(dispatcher, Adopted(b"w", [(1, 3)], [], [(1, 1e-9)]))
    log.clear()
    await turn(dispatcher, FromWorker(b"w", wire.Heartbeat([(1, 3)], 1.0)))
    [ended] = told(log, "scheduler", LeasesEnded)
    assert (ended.leases, ended.how) == ([(1, 3)], "lost")


async def test_a_keyed_worker_is_named_with_its_key_in_every_word_to_the_scheduler() -> None:
    """Found by tests/actors/test_security_state_machine.py: a keyed worker silent for a
    lease (dead) and heard again (alive) was named to the scheduler by its bare name, so
    its next leases were stored without its key, and after a restart its own claim of
    them (``NAME@KEY``) was refused: the job ran again."""
    dispatcher, log = dispatcher_with_log()
    dispatcher.identity = lambda peer: Identity("worker", "KEY")
    await turn(dispatcher, hello(2))
    await turn(dispatcher, Silent(b"w", "dead", 6.0))
    await turn(dispatcher, Silent(b"w", "alive", 0.0))
    await turn(dispatcher, FromWorker(b"w", wire.Drain()))
    await turn(dispatcher, FromWorker(b"w", wire.Goodbye()))
    names = told(log, "scheduler", WorkerNames)
    assert [n.available for n in names] == [True, False, True, False, False]
    assert {n.name for n in names} == {"w@KEY"}
