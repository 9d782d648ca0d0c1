"""The dispatcher passes on every worker's results and freed slots of one turn as one
message each, without reordering them against anything else it says."""

from __future__ import annotations

from typing import Any

import msgspec

from actors.scheduler.dispatcher import Dispatcher
from actors.scheduler.messages import (
    FromWorker,
    Leased,
    WorkerCredits,
    WorkerGone,
    WorkerLost,
    WorkerResults,
)
from tests.helpers.recorder import Recorder
from transport import protocol as wire


def dispatcher_with_log() -> tuple[Dispatcher, list[tuple[str, Any]]]:
    log: list[tuple[str, Any]] = []
    dispatcher = Dispatcher("priority", 1.0, "test", 5.0)
    dispatcher.gateway = Recorder("gateway", log)
    dispatcher.scheduler = Recorder("scheduler", log)
    dispatcher.strategy = Recorder("strategy", log)
    dispatcher.heartbeat = Recorder("heartbeat", log)
    dispatcher.events = Recorder("events", log)
    return dispatcher, log


def assignment(job_id: int) -> wire.Assignment:
    raw = msgspec.Raw(b"\x90")
    return wire.Assignment(job_id, 1, "t", raw, raw, 1)


def result(job_id: int) -> wire.JobResult:
    return wire.JobResult(job_id, 1, True)


async def turn(dispatcher: Dispatcher, *messages: Any) -> None:
    """Messages handled back to back, then the mailbox is empty: one turn."""
    for message in messages:
        await dispatcher.handle(message)
    dispatcher.on_idle()


async def joined(dispatcher: Dispatcher, log: list[tuple[str, Any]], *peers: bytes) -> None:
    for peer in peers:
        await turn(dispatcher, FromWorker(peer, wire.WorkerHello(1, peer.decode(), 4)))
    log.clear()


async def test_results_of_several_workers_in_one_turn_leave_as_one_message_each() -> None:
    dispatcher, log = dispatcher_with_log()
    await joined(dispatcher, log, b"a", b"b")
    leased = [(b"a", assignment(1)), (b"a", assignment(2)), (b"b", assignment(3))]
    await turn(dispatcher, Leased([*leased, (b"a", assignment(4))]))
    log.clear()
    await turn(
        dispatcher,
        FromWorker(b"a", wire.Results([result(1), result(2)])),
        FromWorker(b"b", wire.Results([result(3)])),
        FromWorker(b"a", wire.Results([result(4)])),
    )
    to_scheduler = [m for who, m in log if who == "scheduler"]
    to_strategy = [m for who, m in log if who == "strategy"]
    assert len(to_scheduler) == 1
    [results] = to_scheduler
    assert isinstance(results, WorkerResults)
    assert [(peer, [r.job_id for r in rs]) for peer, _, rs in results.batches] == [
        (b"a", [1, 2]),
        (b"b", [3]),
        (b"a", [4]),
    ]
    [credits] = to_strategy
    assert isinstance(credits, WorkerCredits)
    assert [(g.peer, g.credit) for g in credits.grants] == [(b"a", 2), (b"b", 1), (b"a", 1)]


async def test_what_came_before_a_goodbye_in_the_same_turn_is_passed_on_before_it() -> None:
    # A worker's freed slots reaching the strategy after its WorkerGone would bring the
    # worker back to life there; its results must reach the scheduler before WorkerLost.
    dispatcher, log = dispatcher_with_log()
    await joined(dispatcher, log, b"a")
    await turn(dispatcher, Leased([(b"a", assignment(1)), (b"a", assignment(2))]))
    log.clear()
    await turn(
        dispatcher, FromWorker(b"a", wire.Results([result(1)])), FromWorker(b"a", wire.Goodbye())
    )
    kinds = [(who, type(m)) for who, m in log if who in ("scheduler", "strategy")]
    assert kinds.index(("strategy", WorkerCredits)) < kinds.index(("strategy", WorkerGone))
    assert kinds.index(("scheduler", WorkerResults)) < kinds.index(("scheduler", WorkerLost))
    [lost] = [m for _, m in log if isinstance(m, WorkerLost)]
    assert lost.job_ids == [2], "the job whose result arrived is not reclaimed"
