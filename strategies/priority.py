"""Priority: higher priority first, FIFO among equals, with aging so nothing starves.

Aging is a hard bound on waiting behind later arrivals: once a job has been ready
for ``aging`` seconds it is promoted above every priority and served in arrival
order among the promoted. So a steady stream of high-priority jobs can hold a
low-priority job back for at most ``aging`` seconds (plus the time for a slot to
free up); in normal operation, when nothing waits that long, priorities decide.

Each job sits in a heap (priority order) and in a deque (arrival order); whichever
structure hands it out marks it taken, and the other skips it later (lazy deletion).
Push and pop are O(log n) amortized; the promotion check is O(1) per pop. There is one
such container per (queue, task); across a worker's tasks, ``rank`` compares their next
jobs by the same rule (any promoted job first, by arrival; else highest priority).
"""

from __future__ import annotations

import heapq
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from actors.scheduler.messages import ReadyJob
from strategies.base import ReadyQueue, Strategy

# 30 s: far above a healthy queueing delay, so priorities decide in normal
# operation, while a low-priority job under a flood still runs within half a minute.
DEFAULT_AGING_S = 30.0


class PriorityQueue:
    def __init__(self, aging: float) -> None:
        self.aging = aging
        self._heap: list[tuple[int, int, int, ReadyJob]] = []
        self._arrivals: deque[tuple[int, ReadyJob]] = deque()
        self._size = 0

    def push(self, job: ReadyJob, order: int) -> None:
        job.taken = False
        # ``order`` is unique: a released job's seq (Strategy.release) may equal another's.
        heapq.heappush(self._heap, (-job.priority, job.seq, order, job))
        self._arrivals.append((order, job))
        self._size += 1

    def _promoted(self, now: float) -> bool:
        """Drop what the other structure handed out; is the oldest job due?"""
        arrivals, heap = self._arrivals, self._heap
        while arrivals[0][1].taken:
            arrivals.popleft()
        while heap[0][3].taken:
            heapq.heappop(heap)
        return now - arrivals[0][1].enqueued_at >= self.aging

    def rank(self, now: float) -> tuple[Any, ...]:
        # Promoted jobs rank before all others, in arrival order among themselves.
        if self._promoted(now):
            return (0, self._arrivals[0][0], 0)
        top = self._heap[0]
        return (1, top[0], top[1])

    def pop(self, now: float) -> ReadyJob:
        # A promoted job (waited long enough) goes first, else the highest priority.
        job = self._arrivals.popleft()[1] if self._promoted(now) else heapq.heappop(self._heap)[3]
        job.taken = True
        self._size -= 1
        return job

    def oldest(self) -> ReadyJob:
        arrivals = self._arrivals
        while arrivals[0][1].taken:  # handed out by the heap: dropped here lazily
            arrivals.popleft()
        return arrivals[0][1]

    def __len__(self) -> int:
        return self._size


class PriorityStrategy(Strategy):
    name = "priority"

    def __init__(
        self,
        weights: dict[str, float] | None = None,
        aging: float = DEFAULT_AGING_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(weights)
        self.aging = aging
        self.clock = clock

    def new_queue(self) -> ReadyQueue:
        return PriorityQueue(self.aging)

    def now(self) -> float:
        return self.clock()

    def held_rank(self, job: ReadyJob) -> int:
        return -job.priority
