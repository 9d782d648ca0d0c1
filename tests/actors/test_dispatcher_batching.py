"""The dispatcher passes on every worker's results and freed slots of one turn as one
message each, without reordering them against anything else it says."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import msgspec

import strategies
from actors.runtime import Actor, ActorSystem
from actors.scheduler.dispatcher import Dispatcher
from actors.scheduler.messages import (
    Enqueue,
    FromWorker,
    Leased,
    Picked,
    ReadyJob,
    Send,
    WorkerCredits,
    WorkerGone,
    WorkerLost,
    WorkerResults,
)
from actors.scheduler.strategy import StrategyActor
from tests.helpers.recorder import Recorder
from tests.helpers.turns import Turns
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


async def until(condition: Callable[[], bool]) -> None:
    """Let the loop run until ``condition`` holds (a few hundred turns at most)."""
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("the actors never got there")


class TurnStamps(Actor):
    """A scheduler stand-in running as a real actor: records each message it handles with
    the loop turn it was handled in, and makes the strategy's picks leases at once."""

    def __init__(self, turns: Turns, dispatcher: Dispatcher) -> None:
        super().__init__("scheduler")
        self.turns = turns
        self.dispatcher = dispatcher
        self.handled: list[tuple[str, int]] = []

    async def handle(self, message: Any) -> None:
        self.handled.append((type(message).__name__, self.turns.count))
        if isinstance(message, Picked):
            self.dispatcher.tell(Leased([(peer, assignment(job)) for job, peer in message.picks]))


async def test_a_slot_a_result_frees_is_leased_in_the_turn_its_result_is_written() -> None:
    """A worker's result frees its slot. The strategy's pick for that slot reaches the
    scheduler in the same loop turn as the result itself (the strategy is told first), so
    the lease is written beside the result, not a turn after it: one hand-off less on
    every slot's turn (bench/README, part 9)."""
    dispatcher, log = dispatcher_with_log()
    strategy = StrategyActor(strategies.create("fifo"))
    async with Turns() as turns:
        scheduler = TurnStamps(turns, dispatcher)
        dispatcher.scheduler = strategy.scheduler = scheduler
        dispatcher.strategy, strategy.dispatcher = strategy, dispatcher
        system = ActorSystem()
        for actor in (dispatcher, strategy, scheduler):
            system.add(actor)
        await system.start()
        try:
            dispatcher.tell(FromWorker(b"w", wire.WorkerHello(1, "w", 1)))
            strategy.tell(Enqueue([ReadyJob(i, 0, "default", i, 0.0) for i in (1, 2)]))
            await until(lambda: any(isinstance(m, Send) for _, m in log))  # job 1's Assign
            scheduler.handled.clear()
            dispatcher.tell(FromWorker(b"w", wire.Results([result(1)])))
            await until(lambda: len(scheduler.handled) == 2)
        finally:
            await system.stop()
    [(first, results_turn), (second, picked_turn)] = scheduler.handled
    assert (first, second) == ("WorkerResults", "Picked")
    assert picked_turn == results_turn, "the lease came a turn after the result"


async def test_a_hello_s_prefetch_share_is_kept_below_its_slots() -> None:
    """The prefetch share of a hello's slots is only shown, never trusted for credits; one
    claiming more than its slots is shown as all but one of them."""
    dispatcher, _ = dispatcher_with_log()
    await turn(dispatcher, FromWorker(b"a", wire.WorkerHello(1, "a", 4, prefetch=3)))
    await turn(dispatcher, FromWorker(b"b", wire.WorkerHello(1, "b", 4, prefetch=9)))
    assert (dispatcher.workers[b"a"].prefetch, dispatcher.workers[b"b"].prefetch) == (3, 3)
    assert (dispatcher.workers[b"a"].slots, dispatcher.workers[b"b"].slots) == (4, 4)
