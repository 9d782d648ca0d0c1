"""Priority: higher priority first, FIFO among equals, with aging so nothing starves.

Aging is a hard bound on waiting behind later arrivals: once a job has been ready
for ``aging`` seconds it is promoted above every priority and served in arrival
order among the promoted. So a steady stream of high-priority jobs can hold a
low-priority job back for at most ``aging`` seconds (plus the time for a slot to
free up); in normal operation, when nothing waits that long, priorities decide.

Each job sits in its priority's band and in a deque of all arrivals (arrival order);
whichever structure hands it out marks it taken, and the other skips it later (lazy
deletion). Within a band jobs go by ``(seq, order)`` (submission order; a job pushed
again, e.g. a lease its worker never held, goes back to its place): a band is a deque,
which the jobs join in that order as they arrive in the usual case, plus a small heap
for the few that arrive out of it (``seq`` below the band's last). The non-empty bands
sit in a heap of priorities. So push and pop are O(1) within a band, O(log b) in the b
distinct priorities waiting, O(log k) for the k jobs pushed back out of order; the
promotion check is O(1) per pop. There is one such container per (queue, task); across
a worker's tasks, ``rank`` compares their next jobs by the same rule (any promoted job
first, by arrival; else highest priority).
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


class Band:
    """One priority's jobs in ``(seq, order)`` order: ``jobs`` (arrived in order) merged
    with ``late`` (a heap of those that arrived behind a later seq). ``live``: not taken."""

    __slots__ = ("jobs", "late", "live")

    def __init__(self) -> None:
        self.jobs: deque[ReadyJob] = deque()
        self.late: list[tuple[int, int, ReadyJob]] = []
        self.live = 0

    def push(self, job: ReadyJob) -> None:
        jobs = self.jobs
        if not self.live:  # whatever is left here was handed out by the arrivals: drop it
            jobs.clear()
            self.late.clear()
        if not jobs or job.seq >= jobs[-1].seq:  # ``order`` grows with every push
            jobs.append(job)
        else:
            heapq.heappush(self.late, (job.seq, job.order, job))
        self.live += 1

    def first(self) -> ReadyJob:
        """The next job (the band holds one); taken entries at the heads are dropped."""
        jobs, late = self.jobs, self.late
        while jobs and jobs[0].taken:
            jobs.popleft()
        while late and late[0][2].taken:
            heapq.heappop(late)
        if not late:
            return jobs[0]
        head = late[0][2]
        if not jobs:
            return head
        job = jobs[0]
        return head if (head.seq, head.order) < (job.seq, job.order) else job

    def pop(self) -> ReadyJob:
        job = self.first()
        if self.jobs and self.jobs[0] is job:
            self.jobs.popleft()
        else:
            heapq.heappop(self.late)
        return job


class PriorityQueue:
    def __init__(self, aging: float) -> None:
        self.aging = aging
        self._bands: dict[int, Band] = {}  # priority -> its band (kept while in _prios)
        self._prios: list[int] = []  # heap of -priority, one per band
        self._arrivals: deque[ReadyJob] = deque()  # jobs, not tuples: 64 bytes less each
        self._size = 0

    def push(self, job: ReadyJob, order: int) -> None:
        job.taken = False
        # ``order`` is unique: a released job's seq (Strategy.release) may equal another's.
        job.order = order
        band = self._bands.get(job.priority)
        if band is None:
            band = self._bands[job.priority] = Band()
            heapq.heappush(self._prios, -job.priority)
        band.push(job)
        self._arrivals.append(job)
        self._size += 1

    def _top(self) -> Band:
        """The highest band holding a job (there is one); empty bands above it go."""
        bands, prios = self._bands, self._prios
        band = bands[-prios[0]]
        while not band.live:
            del bands[-heapq.heappop(prios)]
            band = bands[-prios[0]]
        return band

    def _promoted(self, now: float) -> bool:
        """Is the oldest job due?"""
        return now - self.oldest().enqueued_at >= self.aging

    def rank(self, now: float) -> tuple[Any, ...]:
        # Promoted jobs rank before all others, in arrival order among themselves.
        if self._promoted(now):
            return (0, self._arrivals[0].order, 0)
        top = self._top().first()
        return (1, -top.priority, top.seq)

    def pop(self, now: float) -> ReadyJob:
        # A promoted job (waited long enough) goes first, else the highest priority.
        if self._promoted(now):
            job = self._arrivals.popleft()
            self._bands[job.priority].live -= 1
        else:
            band = self._top()
            job = band.pop()
            band.live -= 1
        job.taken = True
        self._size -= 1
        return job

    def oldest(self) -> ReadyJob:
        arrivals = self._arrivals
        while arrivals[0].taken:  # handed out by a band: dropped here lazily
            arrivals.popleft()
        return arrivals[0]

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
