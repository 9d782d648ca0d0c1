"""The strategy actor's matching: credits are never exceeded, and each strategy orders the
workers as it promises (round-robin rotates, least-loaded balances, default fills)."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest

import strategies
from actors.messages import Enqueue, Picked, ReadyJob, ReturnCredit, WorkerCredit, WorkerGone
from actors.runtime import PUBLISH, Actor
from actors.strategy import StrategyActor


class Recorder(Actor):
    def __init__(self) -> None:
        super().__init__("recorder")

    def picks(self) -> list[tuple[int, bytes]]:
        out: list[tuple[int, bytes]] = []
        while not self.mailbox.empty():
            message = self.mailbox.get_nowait()
            assert isinstance(message, Picked)
            out += message.picks
        return out


async def make(name: str) -> tuple[StrategyActor, Recorder]:
    actor = StrategyActor(strategies.create(name))
    actor.scheduler = recorder = Recorder()
    return actor, recorder


async def send(actor: StrategyActor, *messages: Any) -> None:
    """Handle each message as the runtime does: its mailbox is then empty, so it matches."""
    for message in messages:
        await actor.handle(message)
        actor.on_idle()


def jobs(n: int, queue: str = "default", start: int = 1) -> Enqueue:
    return Enqueue([ReadyJob(i, 0, queue, i, 0.0) for i in range(start, start + n)])


@pytest.mark.parametrize("name", sorted(strategies.STRATEGIES))
async def test_no_worker_is_ever_proposed_more_jobs_than_its_credit(name: str) -> None:
    actor, recorder = await make(name)
    await send(
        actor,
        WorkerCredit(b"a", "a", ("default",), 4, 4),
        WorkerCredit(b"b", "b", ("default",), 1, 1),
        jobs(100),
    )
    assert Counter(peer for _, peer in recorder.picks()) == {b"a": 4, b"b": 1}
    await send(actor, ReturnCredit(b"b", 1), WorkerGone(b"a"))
    assert Counter(peer for _, peer in recorder.picks()) == {b"b": 1}


async def test_round_robin_rotates_one_job_at_a_time() -> None:
    actor, recorder = await make("round-robin")
    for peer in (b"a", b"b", b"c"):
        await send(actor, WorkerCredit(peer, peer.decode(), ("default",), 10, 10))
    await send(actor, jobs(7))
    assert [peer for _, peer in recorder.picks()] == [b"a", b"b", b"c", b"a", b"b", b"c", b"a"]
    await send(actor, jobs(3, start=8))
    assert [peer for _, peer in recorder.picks()] == [b"b", b"c", b"a"]


async def test_least_loaded_gives_the_next_job_to_the_most_free_relative_to_size() -> None:
    actor, recorder = await make("least-loaded")
    await send(
        actor,
        WorkerCredit(b"big", "big", ("default",), 8, 8),
        WorkerCredit(b"small", "small", ("default",), 2, 2),
        jobs(5),
    )
    # big 8/8 -> 7/8 -> 6/8 -> small 2/2 (1.0 > 0.75) -> big 6/8 ...
    assert Counter(peer for _, peer in recorder.picks()) == {b"big": 4, b"small": 1}


async def test_jobs_go_only_to_workers_serving_their_queue() -> None:
    actor, recorder = await make("fifo")
    await send(
        actor, WorkerCredit(b"h", "h", ("heavy",), 2, 2), WorkerCredit(b"l", "l", ("light",), 2, 2)
    )
    await send(actor, jobs(5, "heavy"), jobs(5, "light", start=6))
    picks = recorder.picks()
    assert {peer for job_id, peer in picks if job_id <= 5} == {b"h"}
    assert {peer for job_id, peer in picks if job_id > 5} == {b"l"}


async def test_a_metrics_tick_between_messages_cannot_swallow_the_match() -> None:
    actor, recorder = await make("fifo")
    actor.tell(WorkerCredit(b"a", "a", ("default",), 3, 3))
    actor.tell(jobs(3))
    actor.tell(PUBLISH)  # handled by the runtime, not by handle(): it must not end the burst
    running = asyncio.create_task(actor._run())
    await asyncio.sleep(0.05)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert len(recorder.picks()) == 3
