"""One behavioural suite, run against every registered strategy, plus each one's own order."""

from __future__ import annotations

import random
import time

import pytest

import strategies
from actors.messages import ReadyJob
from strategies import STRATEGIES, Strategy


def job(
    job_id: int, priority: int = 0, queue: str = "default", at: float | None = None
) -> ReadyJob:
    return ReadyJob(job_id, priority, queue, job_id, time.monotonic() if at is None else at)


@pytest.fixture(params=sorted(STRATEGIES))
def strategy(request: pytest.FixtureRequest) -> Strategy:
    return strategies.create(request.param)


def test_every_pushed_job_is_popped_exactly_once(strategy: Strategy) -> None:
    rng = random.Random(7)
    for i in range(1, 5001):
        strategy.push(job(i, rng.randint(-3, 3), rng.choice(["a", "b"])))
    popped = []
    while (j := strategy.pop(("a", "b"))) is not None:
        popped.append(j.job_id)
    assert sorted(popped) == list(range(1, 5001))
    assert len(strategy) == 0


def test_a_worker_only_gets_jobs_from_its_queues(strategy: Strategy) -> None:
    strategy.push(job(1, queue="heavy"))
    strategy.push(job(2, queue="light"))
    assert strategy.pop(("light",)).job_id == 2  # type: ignore[union-attr]
    assert strategy.pop(("light",)) is None
    assert strategy.depth() == {"heavy": 1, "light": 0}
    assert strategy.pop(("heavy", "light")).job_id == 1  # type: ignore[union-attr]


def test_queues_sharing_a_worker_are_served_by_weight(strategy: Strategy) -> None:
    strategy.weights = {"a": 1.0, "b": 3.0}
    for i in range(1, 401):
        strategy.push(job(i, queue="a" if i <= 200 else "b"))
    first = [strategy.pop(("a", "b")) for _ in range(200)]
    from_b = sum(1 for j in first if j is not None and j.queue == "b")
    assert 145 <= from_b <= 155, "three of every four picks go to the weight-3 queue"


def test_a_queue_that_was_idle_does_not_get_a_burst_of_catch_up_service(
    strategy: Strategy,
) -> None:
    for i in range(1, 1001):
        strategy.push(job(i, queue="busy"))
    for _ in range(500):
        strategy.pop(("busy", "late"))
    for i in range(1001, 1101):
        strategy.push(job(i, queue="late"))
    next_ten = [strategy.pop(("busy", "late")) for _ in range(10)]
    assert 4 <= sum(1 for j in next_ten if j is not None and j.queue == "late") <= 6


def test_an_unknown_strategy_name_lists_the_known_ones() -> None:
    with pytest.raises(
        strategies.UnknownStrategy, match="fifo, least-loaded, priority, round-robin"
    ):
        strategies.create("random")


def test_fifo_keeps_submission_order_whatever_the_priority() -> None:
    fifo = strategies.create("fifo")
    for i, p in enumerate([0, 9, 3, 9, 1], start=1):
        fifo.push(job(i, p))
    assert [fifo.pop(("default",)).job_id for _ in range(5)] == [1, 2, 3, 4, 5]  # type: ignore[union-attr]


def test_priority_runs_higher_first_and_fifo_among_equals() -> None:
    prio = strategies.create("priority")
    for i, p in enumerate([0, 9, 3, 9, 1], start=1):
        prio.push(job(i, p))
    assert [prio.pop(("default",)).job_id for _ in range(5)] == [2, 4, 3, 5, 1]  # type: ignore[union-attr]


def test_priority_aging_bounds_how_long_a_low_job_waits_behind_a_flood() -> None:
    from strategies.priority import PriorityStrategy

    now = [0.0]
    prio = PriorityStrategy(aging=5.0, clock=lambda: now[0])
    prio.push(job(1, priority=0, at=0.0))
    # A flood of priority-5 jobs keeps arriving; one is served per 0.1 s.
    served_low_at = None
    for step in range(1, 200):
        now[0] = step * 0.1
        prio.push(job(step + 1, priority=5, at=now[0]))
        picked = prio.pop(("default",))
        if picked is not None and picked.job_id == 1:
            served_low_at = now[0]
            break
    assert served_low_at is not None
    assert 5.0 <= served_low_at <= 5.1


def test_promoted_jobs_go_in_arrival_order_and_nothing_is_handed_out_twice() -> None:
    from strategies.priority import PriorityStrategy

    now = [0.0]
    prio = PriorityStrategy(aging=1.0, clock=lambda: now[0])
    for i in range(1, 101):
        prio.push(job(i, priority=i % 7, at=i * 0.01))
    seen = []
    for step in range(100):
        now[0] = step * 0.05
        picked = prio.pop(("default",))
        assert picked is not None
        seen.append(picked.job_id)
    assert sorted(seen) == list(range(1, 101))
    assert prio.pop(("default",)) is None
