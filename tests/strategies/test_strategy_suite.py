"""One behavioural suite, run against every registered strategy, plus each one's own order."""

from __future__ import annotations

import random
import time
from typing import Any

import pytest

import strategies
from actors.scheduler.messages import ReadyJob
from strategies import STRATEGIES, Strategy


def job(
    job_id: int,
    priority: int = 0,
    queue: str = "default",
    at: float | None = None,
    task: str = "",
) -> ReadyJob:
    at = time.monotonic() if at is None else at
    return ReadyJob(job_id, priority, queue, job_id, at, task=task)


def worker(
    strategy: Strategy,
    name: str,
    queues: tuple[str, ...] = ("default",),
    tasks: frozenset[str] = frozenset(),
    slots: int = 1,
) -> bytes:
    """Connect a worker with all its slots free, as the dispatcher's first credit does."""
    strategy.credit(name.encode(), name, queues, tasks, slots, slots)
    return name.encode()


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


# ------------------------------------------------------- tasks (issue 13.13)


def test_oldest_names_each_queues_longest_waiting_ready_job_as_jobs_leave(
    strategy: Strategy,
) -> None:
    assert strategy.oldest() == {}
    strategy.push(job(1, priority=-5, queue="a", at=10.0, task="x"))
    strategy.push(job(2, priority=9, queue="a", at=20.0, task="y"))
    strategy.push(job(3, priority=9, queue="a", at=30.0, task="x"))
    strategy.push(job(4, queue="b", at=40.0))
    assert {q: j.job_id for q, j in strategy.oldest().items()} == {"a": 1, "b": 4}
    popped = {strategy.pop(("a",)).job_id for _ in range(2)}  # type: ignore[union-attr]
    left = ({1, 2, 3} - popped).pop()
    assert {q: j.job_id for q, j in strategy.oldest().items()} == {"a": left, "b": 4}
    strategy.pop(("a",))
    strategy.pop(("b",))
    assert strategy.oldest() == {}, "an emptied queue has no oldest job"


def test_a_job_goes_only_to_a_worker_that_announced_its_task(strategy: Strategy) -> None:
    worker(strategy, "plain", tasks=frozenset({"tasks.add"}), slots=4)
    worker(strategy, "etl", tasks=frozenset({"etl.extract"}), slots=1)
    for i in range(1, 5):
        strategy.push(job(i, task="etl.extract"))
    assert strategy.match() == [(1, b"etl")]
    strategy.give_back(b"etl", 1)
    assert strategy.match() == [(2, b"etl")]


def test_a_job_no_worker_can_run_does_not_block_the_jobs_behind_it(strategy: Strategy) -> None:
    worker(strategy, "y", tasks=frozenset({"y"}), slots=3)
    strategy.push(job(1, priority=9, task="x"))  # at the head, whatever the order
    strategy.push(job(2, task="y"))
    strategy.push(job(3, task="y"))
    assert sorted(strategy.match()) == [(2, b"y"), (3, b"y")]
    assert strategy.waiting_for_worker() == {"default": 1}
    assert len(strategy) == 1
    worker(strategy, "x", tasks=frozenset({"x", "y"}))  # a worker that has it comes
    assert strategy.waiting_for_worker() == {"default": 0}
    assert strategy.match() == [(1, b"x")]


def test_an_unrunnable_queue_does_not_win_a_shared_workers_fair_share(strategy: Strategy) -> None:
    worker(strategy, "w", ("a", "b"), frozenset({"y"}), slots=3)
    for i in range(1, 11):
        strategy.push(job(i, queue="a", task="x"))  # least served, but not for this worker
    strategy.push(job(11, queue="b", task="y"))
    assert strategy.match() == [(11, b"w")]


def test_a_worker_that_announced_no_tasks_may_run_any_and_a_taskless_job_goes_anywhere(
    strategy: Strategy,
) -> None:
    worker(strategy, "old", slots=1)  # announced nothing: unknown, may run anything
    worker(strategy, "new", tasks=frozenset({"y"}), slots=1)
    strategy.push(job(1, task="x"))
    strategy.push(job(2))  # names no task (built by hand): any worker may run it
    assert sorted(strategy.match()) == [(1, b"old"), (2, b"new")]
    assert strategy.waiting_for_worker() == {"default": 0}


def test_a_credit_that_names_no_tasks_does_not_make_a_worker_run_anything(
    strategy: Strategy,
) -> None:
    peer = worker(strategy, "y", tasks=frozenset({"y"}), slots=2)
    strategy.push(job(1, task="x"))
    strategy.credit(peer, "y", (), frozenset(), 2, 0)  # e.g. the credit of a finished job
    assert strategy.match() == []
    strategy.credit(peer, "y", ("default",), frozenset({"x"}), 2, 0)  # hello: now it has x
    assert strategy.match() == [(1, peer)]


def test_waiting_for_worker_counts_what_no_connected_worker_on_the_queue_may_run(
    strategy: Strategy,
) -> None:
    strategy.push(job(1, queue="a", task="x"))
    strategy.push(job(2, queue="a", task="x"))
    strategy.push(job(3, queue="b", task="x"))
    assert strategy.waiting_for_worker() == {"a": 2, "b": 1}, "no worker at all yet"
    peer = worker(strategy, "bx", ("b",), frozenset({"x"}), slots=1)
    strategy.credit(b"busy", "busy", ("a",), frozenset({"x"}), 1, 0)  # has x, no free slot
    strategy.match()
    assert strategy.waiting_for_worker() == {"a": 0, "b": 0}
    strategy.remove_worker(b"busy")
    strategy.remove_worker(peer)
    assert strategy.waiting_for_worker() == {"a": 2, "b": 0}


def test_a_worker_gets_its_tasks_in_the_strategys_order_across_tasks(strategy: Strategy) -> None:
    peer = worker(strategy, "w", tasks=frozenset({"x", "y"}), slots=1)
    for i, (priority, task) in enumerate([(0, "x"), (9, "y"), (5, "x")], start=1):
        strategy.push(job(i, priority, task=task))
    order = []
    for _ in range(3):
        order += [job_id for job_id, _ in strategy.match()]
        strategy.give_back(peer, 1)
    assert order == ([2, 3, 1] if strategy.name == "priority" else [1, 2, 3])


def test_priority_aging_promotes_a_job_over_other_tasks_too() -> None:
    from strategies.priority import PriorityStrategy

    now = [0.0]
    prio = PriorityStrategy(aging=5.0, clock=lambda: now[0])
    prio.push(job(1, priority=0, at=0.0, task="x"))
    prio.push(job(2, priority=9, at=4.0, task="y"))
    now[0] = 5.0
    assert prio.pop(("default",), frozenset({"x", "y"})).job_id == 1  # type: ignore[union-attr]


def test_a_job_is_not_left_behind_when_the_worker_its_arrival_woke_takes_another(
    strategy: Strategy,
) -> None:
    both = worker(strategy, "both", ("q2", "q1"), frozenset({"a", "b"}))
    only_b = worker(strategy, "only-b", ("q2",), frozenset({"b"}))
    only_a = worker(strategy, "only-a", ("q1",), frozenset({"a"}))
    strategy.push(job(1, queue="q1", task="nobody"))
    assert strategy.match() == []  # all three found nothing they may run: parked
    strategy.push(job(2, queue="q1", task="a"))  # wakes "both", the first that may run it
    strategy.push(job(3, queue="q2", task="b"))  # wakes "only-b"
    # "both" is served first and takes job 3 (q2 comes first in its queues); "only-b"
    # then finds nothing; job 2 must still go to "only-a".
    assert sorted(strategy.match()) == [(2, only_a), (3, both)]
    assert only_b in strategy.workers.workers


# ------------------------------------------------- matching's cost (issue 12.13)


def count_calls(strategy: Strategy, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the job look-ups and worker keys the matching makes (its units of work)."""
    calls = [0]
    for method in ("pop", "worker_key"):
        inner = getattr(strategy, method)

        def counted(*args: Any, _inner: Any = inner) -> Any:
            calls[0] += 1
            return _inner(*args)

        monkeypatch.setattr(strategy, method, counted)
    strategy.workers.key = strategy.worker_key
    return calls


LAYOUTS = {
    # layout: (queue of the 2,000 other workers, their tasks, a job none can run waits)
    "idle workers on another queue": ("other", frozenset({"t"}), False),
    "idle workers on the queue with other tasks": ("main", frozenset({"u"}), False),
    "idle workers with other tasks, and a job none can run": ("main", frozenset({"u"}), True),
    "free workers that may run it all, and a job none can run": ("main", frozenset({"t"}), True),
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_work_per_assignment_does_not_grow_with_the_workers(
    strategy: Strategy, monkeypatch: pytest.MonkeyPatch, layout: str
) -> None:
    queue, tasks, stuck = LAYOUTS[layout]
    for i in range(2000):
        worker(strategy, f"w{i}", (queue,), tasks, slots=4)
    worker(strategy, "busy", ("main",), frozenset({"t"}), slots=1)
    if stuck:
        strategy.push(job(1, queue="main", task="nobody"))
    strategy.push(job(2, queue="main", task="t"))
    [(_, peer)] = strategy.match()  # the first match meets every worker once
    calls = count_calls(strategy, monkeypatch)
    for i in range(3, 503):
        strategy.give_back(peer, 1)  # the last job ended
        strategy.push(job(i, queue="main", task="t"))
        [(job_id, peer)] = strategy.match()
        assert job_id == i
    # A few steps per assignment (a credit, a wake, a turn, parking what found nothing),
    # against the 2,001 of visiting every worker with a free slot.
    assert calls[0] <= 10 * 500, f"{calls[0] / 500:.0f} steps per assignment"


def test_matching_is_maximal_within_credit_and_tasks_under_random_churn(
    strategy: Strategy,
) -> None:
    """A random mix of jobs, workers joining, finishing, leaving and saying hello again:
    after every match no worker exceeds its credit or gets a job it may not run, and no
    ready job is left while a worker with a free slot may run it."""
    rng = random.Random(13)
    queues, tasks = ["a", "b", "c"], ["x", "y", "z"]
    workers: dict[bytes, tuple[tuple[str, ...], frozenset[str], int]] = {}
    credit: dict[bytes, int] = {}
    running: dict[int, bytes] = {}
    ready: dict[int, ReadyJob] = {}
    known: dict[int, ReadyJob] = {}
    next_id = 0

    def may_run(peer: bytes, j: ReadyJob) -> bool:
        qs, ts, _ = workers[peer]
        return j.queue in qs and (not ts or not j.task or j.task in ts)

    def add(queue: str, task: str) -> None:
        nonlocal next_id
        next_id += 1
        ready[next_id] = known[next_id] = job(next_id, rng.randint(-2, 2), queue, task=task)
        strategy.push(ready[next_id])

    def lose(peer: bytes) -> None:
        """The worker is gone: the scheduler requeues its jobs (as new ready jobs)."""
        for job_id in [j for j, p in running.items() if p == peer]:
            del running[job_id]
            add(known[job_id].queue, known[job_id].task)

    for _ in range(3000):
        roll = rng.random()
        if roll < 0.35:
            for _ in range(rng.randint(1, 4)):
                add(rng.choice(queues), rng.choice([*tasks, ""]) if rng.random() < 0.9 else "-")
        elif roll < 0.6 and running:  # a job ends: its slot is free again
            job_id = rng.choice(list(running))
            peer = running.pop(job_id)
            credit[peer] += 1
            qs, ts, slots = workers[peer]
            strategy.credit(peer, peer.decode(), qs, ts, slots, 1)
        elif roll < 0.7 or not workers:  # a worker joins, or says hello again differently
            peer = f"w{rng.randint(0, 30)}".encode()
            qs = tuple(rng.sample(queues, rng.randint(1, 2)))
            ts = frozenset(rng.sample(tasks, rng.randint(0, 2)))
            slots = rng.randint(1, 4)
            if peer in workers and rng.random() < 0.5:  # new queues/tasks, same jobs
                ts = ts or workers[peer][1]  # a credit naming no tasks changes none
                slots = workers[peer][2]
                workers[peer] = (qs, ts, slots)
                strategy.credit(peer, peer.decode(), qs, ts, slots, 0)
            else:
                if peer in workers:  # gone and back: its jobs were requeued
                    strategy.remove_worker(peer)
                    lose(peer)
                workers[peer], credit[peer] = (qs, ts, slots), slots
                strategy.credit(peer, peer.decode(), qs, ts, slots, slots)
        elif roll < 0.75:  # a worker leaves; the scheduler requeues its jobs
            peer = rng.choice(list(workers))
            strategy.remove_worker(peer)
            del workers[peer], credit[peer]
            lose(peer)
        for job_id, peer in strategy.match():
            assert credit[peer] > 0, "over its credit"
            assert may_run(peer, ready[job_id]), "a job it may not run"
            credit[peer] -= 1
            running[job_id] = peer
            del ready[job_id]
        for peer, free in credit.items():
            if free:
                assert not [j for j in ready.values() if may_run(peer, j)], "left behind"
        assert len(strategy) == len(ready)
