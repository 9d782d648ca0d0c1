"""The priority strategy's band queue (issue 19): a deque per priority, O(1) per job within
a band, in exactly the order of the one heap it replaced: highest priority first, then
submission order (``seq``), then arrival; a job ready for ``aging`` seconds first of all."""

from __future__ import annotations

import heapq
import random
from collections import deque
from typing import Any

from actors.scheduler.messages import ReadyJob
from strategies.priority import PriorityQueue, PriorityStrategy


class HeapQueue:
    """The heap-and-arrivals queue the bands replaced, as the reference order."""

    def __init__(self, aging: float) -> None:
        self.aging = aging
        self._heap: list[tuple[int, int, int, ReadyJob]] = []
        self._arrivals: deque[tuple[int, ReadyJob]] = deque()
        self._size = 0

    def push(self, job: ReadyJob, order: int) -> None:
        job.taken = False
        heapq.heappush(self._heap, (-job.priority, job.seq, order, job))
        self._arrivals.append((order, job))
        self._size += 1

    def _promoted(self, now: float) -> bool:
        while self._arrivals[0][1].taken:
            self._arrivals.popleft()
        while self._heap[0][3].taken:
            heapq.heappop(self._heap)
        return now - self._arrivals[0][1].enqueued_at >= self.aging

    def rank(self, now: float) -> tuple[Any, ...]:
        if self._promoted(now):
            return (0, self._arrivals[0][0], 0)
        top = self._heap[0]
        return (1, top[0], top[1])

    def pop(self, now: float) -> ReadyJob:
        promoted = self._promoted(now)
        job = self._arrivals.popleft()[1] if promoted else heapq.heappop(self._heap)[3]
        job.taken = True
        self._size -= 1
        return job


def ready(job_id: int, priority: int, seq: int, at: float) -> ReadyJob:
    return ReadyJob(job_id, priority, "default", seq, at)


def test_same_order_as_the_heap_under_random_pushes_repushes_and_aging() -> None:
    for seed in range(30):
        rand = random.Random(seed)
        bands, heap = PriorityQueue(aging=5.0), HeapQueue(aging=5.0)
        now, order, next_seq = 0.0, 0, 1
        popped: list[tuple[int, int]] = []  # (id, seq) handed out, to push back
        for _ in range(400):
            now += rand.choice((0.0, 0.0, 0.1, 1.0, 3.0))
            if rand.random() < 0.55 or not len(bands):
                if popped and rand.random() < 0.2:  # pushed back: its seq is an old one
                    job_id, seq = popped.pop(rand.randrange(len(popped)))
                else:
                    job_id = seq = next_seq
                    next_seq += 1
                priority = rand.choice((-1, 0, 0, 0, 2, 5))
                order += 1
                bands.push(ready(job_id, priority, seq, now), order)
                heap.push(ready(job_id, priority, seq, now), order)
            else:
                assert bands.rank(now) == heap.rank(now), seed
                got, want = bands.pop(now), heap.pop(now)
                assert (got.job_id, got.seq) == (want.job_id, want.seq), seed
                popped.append((got.job_id, got.seq))
            assert len(bands) == heap._size


def test_equal_priorities_go_by_submission_order_and_a_pushed_back_job_by_its_seq() -> None:
    queue = PriorityQueue(aging=1000.0)
    for order, seq in enumerate((1, 2, 3), start=1):
        queue.push(ready(seq, 0, seq, 0.0), order)
    first = queue.pop(0.0)
    queue.push(ready(4, 0, 4, 0.0), 4)
    queue.push(first, 5)  # a lease its worker never held: back at its place, seq 1
    assert [queue.pop(0.0).job_id for _ in range(4)] == [1, 2, 3, 4]
    assert len(queue) == 0


def test_a_band_emptied_by_promotions_is_dropped_and_can_come_back() -> None:
    queue = PriorityQueue(aging=5.0)
    queue.push(ready(1, 9, 1, 0.0), 1)
    queue.push(ready(2, 0, 2, 10.0), 2)
    assert queue.pop(10.0).job_id == 1  # aged, and first anyway
    queue.push(ready(3, 9, 3, 10.0), 3)
    queue.push(ready(4, 0, 4, 10.0), 4)
    assert [queue.pop(10.0).job_id for _ in range(3)] == [3, 2, 4]
    queue.push(ready(5, 9, 5, 20.0), 5)
    assert queue.rank(20.0) == (1, -9, 5)
    assert queue.oldest().job_id == 5


def test_aging_at_exactly_the_bound_promotes_in_arrival_order() -> None:
    queue = PriorityQueue(aging=5.0)
    queue.push(ready(1, -1, 1, 0.0), 1)
    queue.push(ready(2, 0, 2, 1.0), 2)
    queue.push(ready(3, 9, 3, 4.0), 3)
    assert queue.rank(4.999) == (1, -9, 3)
    assert queue.pop(5.0).job_id == 1, "waited exactly `aging`: promoted"
    assert queue.pop(5.0).job_id == 3, "the next oldest is not due: priority decides"
    assert queue.pop(6.0).job_id == 2


def test_a_cancelled_queued_job_comes_out_in_its_place_and_its_lease_is_refused() -> None:
    # The strategy never searches its queues for a cancelled job: the job comes out in
    # its turn, the scheduler's lease (QUEUED -> RUNNING) fails, and the slot is given back.
    strategy = PriorityStrategy(aging=1000.0, clock=lambda: 0.0)
    for job_id, priority in ((1, 0), (2, 5), (3, 5)):
        strategy.push(ready(job_id, priority, job_id, 0.0))
    strategy.credit(b"w", "w", ("default",), frozenset(), 2, 2)
    assert [job_id for job_id, _ in strategy.match()] == [2, 3]
    strategy.give_back(b"w", 1)  # job 3 was cancelled meanwhile: its lease failed
    assert [job_id for job_id, _ in strategy.match()] == [1]
    assert len(strategy) == 0
