"""Priority: higher priority first, FIFO among equals, with aging so nothing starves.

Aging is a hard bound on waiting behind later arrivals: once a job has been ready
for ``aging`` seconds it is promoted above every priority and served in arrival
order among the promoted. So a steady stream of high-priority jobs can hold a
low-priority job back for at most ``aging`` seconds (plus the time for a slot to
free up); in normal operation, when nothing waits that long, priorities decide.

Each job sits in a heap (priority order) and in a deque (arrival order); whichever
structure hands it out marks it taken, and the other skips it later (lazy deletion).
Push and pop are O(log n) amortized; the promotion check is O(1) per pop.
"""

from __future__ import annotations

import heapq
import time
from collections import deque
from collections.abc import Callable

from actors.messages import ReadyJob
from strategies.base import ReadyQueue, Strategy

# 30 s: far above a healthy queueing delay, so priorities decide in normal
# operation, while a low-priority job under a flood still runs within half a minute.
DEFAULT_AGING_S = 30.0


class PriorityQueue:
    def __init__(self, aging: float, clock: Callable[[], float]) -> None:
        self.aging = aging
        self.clock = clock
        self._heap: list[tuple[int, int, ReadyJob]] = []
        self._arrivals: deque[ReadyJob] = deque()
        self._size = 0

    def push(self, job: ReadyJob) -> None:
        job.taken = False
        heapq.heappush(self._heap, (-job.priority, job.seq, job))
        self._arrivals.append(job)
        self._size += 1

    def pop(self) -> ReadyJob:
        arrivals = self._arrivals
        while arrivals[0].taken:
            arrivals.popleft()
        oldest = arrivals[0]
        if self.clock() - oldest.enqueued_at >= self.aging:
            job = arrivals.popleft()  # waited long enough: it goes first
        else:
            heap = self._heap
            while heap[0][2].taken:
                heapq.heappop(heap)
            job = heapq.heappop(heap)[2]
        job.taken = True
        self._size -= 1
        return job

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
        return PriorityQueue(self.aging, self.clock)
