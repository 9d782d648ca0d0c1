"""The strategy actor's matching: credits are never exceeded, and each strategy orders the
workers as it promises (round-robin rotates, least-loaded balances, default fills)."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest

import strategies
from actors.runtime import PUBLISH, SLICE, Actor
from actors.scheduler.messages import (
    Enqueue,
    Picked,
    ReadyJob,
    ReturnCredit,
    StatusPart,
    WorkerCredit,
    WorkerCredits,
    WorkerGone,
)
from actors.scheduler.strategy import StrategyActor
from tests.helpers.turns import Turns


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


def jobs(n: int, queue: str = "default", start: int = 1, task: str = "") -> Enqueue:
    return Enqueue([ReadyJob(i, 0, queue, i, 0.0, task=task) for i in range(start, start + n)])


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


# ------------------------------------------------------------ tasks (issue 13.13)


@pytest.mark.parametrize("name", sorted(strategies.STRATEGIES))
async def test_a_job_goes_only_to_the_worker_that_has_its_task(name: str) -> None:
    actor, recorder = await make(name)
    await send(
        actor,
        WorkerCredit(b"tasks", "tasks", ("default",), 4, 4, frozenset({"tasks.add"})),
        WorkerCredit(b"etl", "etl", ("default",), 1, 1, frozenset({"etl.extract"})),
        jobs(4, task="etl.extract"),
    )
    assert recorder.picks() == [(1, b"etl")]
    for job_id in (2, 3, 4):  # each ends, its slot comes back, the next one goes there too
        await send(actor, WorkerCredits([WorkerCredit(b"etl", "etl", ("default",), 1, 1)]))
        assert recorder.picks() == [(job_id, b"etl")]


class StatusSink(Actor):
    def __init__(self) -> None:
        super().__init__("dispatcher")


async def test_a_job_no_worker_can_run_waits_without_blocking_and_shows_in_the_status() -> None:
    actor, recorder = await make("priority")
    actor.dispatcher = dispatcher = StatusSink()
    y = frozenset({"y"})
    await send(
        actor,
        WorkerCredit(b"w", "w", ("default",), 2, 2, y),
        Enqueue([ReadyJob(1, 9, "default", 1, 0.0, task="x")]),  # first, and first in priority
        jobs(2, start=2, task="y"),
        StatusPart(b"client", 7, {}),
    )
    assert sorted(recorder.picks()) == [(2, b"w"), (3, b"w")]
    part = dispatcher.mailbox.get_nowait()
    assert isinstance(part, StatusPart)
    view = part.fields["queues"]["default"]
    assert (view.ready, view.high, view.waiting_for_worker) == (1, 1, 1)


async def test_the_waiting_job_goes_to_a_worker_that_has_its_task_when_one_joins() -> None:
    actor, recorder = await make("fifo")
    await send(
        actor,
        WorkerCredit(b"w", "w", ("default",), 1, 1, frozenset({"y"})),
        jobs(1, task="x"),
    )
    assert recorder.picks() == []
    await send(actor, WorkerCredit(b"x", "x", ("default",), 1, 1, frozenset({"x"})))
    assert recorder.picks() == [(1, b"x")]


# ------------------------------------------------------ matching's cost (issue 12.13)


@pytest.mark.parametrize("name", sorted(strategies.STRATEGIES))
async def test_idle_workers_on_another_queue_are_not_looked_at_for_each_job(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 12.13: 1,000 idle workers serving another queue cut throughput from 2,667 to
    16 jobs/s: every match asked each of them for a job."""
    actor, recorder = await make(name)
    for i in range(1000):
        await send(actor, WorkerCredit(f"idle{i}".encode(), "idle", ("other",), 4, 4))
    await send(actor, WorkerCredit(b"busy", "busy", ("main",), 1, 1), jobs(1, "main"))
    assert recorder.picks() == [(1, b"busy")]  # the first match may meet every worker once
    looked = [0]
    pop = actor.strategy.pop

    def counted(*args: Any) -> Any:
        looked[0] += 1
        return pop(*args)

    monkeypatch.setattr(actor.strategy, "pop", counted)
    for job_id in range(2, 202):
        await send(actor, ReturnCredit(b"busy", 1), jobs(1, "main", start=job_id))
        assert recorder.picks() == [(job_id, b"busy")]
    assert looked[0] <= 3 * 200, f"{looked[0] / 200:.0f} job look-ups per assignment"


async def test_a_new_leaders_whole_backlog_is_queued_a_slice_at_a_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One Enqueue larger than a slice (a new leader's backlog: it renews its term on the
    same loop) lets other tasks run between slices; a smaller one is queued in one go."""
    actor, _ = await make("priority")
    seen: list[int] = []
    push = actor.strategy.push
    async with Turns() as turns:
        monkeypatch.setattr(
            actor.strategy, "push", lambda job: (seen.append(turns.count), push(job))
        )
        await actor.handle(jobs(2 * SLICE + 1))
        assert len(seen) == 2 * SLICE + 1
        assert len(set(seen)) == 3, "three slices, the other task ran between each two"
        seen.clear()
        await actor.handle(jobs(SLICE, start=10 * SLICE))
        assert len(set(seen)) == 1
