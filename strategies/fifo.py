"""FIFO: ready jobs in arrival order within each queue.

A job a gate held (``strategies.gates``) comes back with the arrival order it had, behind
jobs that arrived after it: it goes to a small heap beside the deque, and whichever of the
two holds the earlier arrival serves next. Jobs without keys or limits never touch it.
"""

from __future__ import annotations

import heapq
from collections import deque
from typing import Any

from actors.scheduler.messages import ReadyJob
from strategies.base import ReadyQueue, Strategy


class FifoQueue:
    def __init__(self) -> None:
        self._jobs: deque[tuple[int, ReadyJob]] = deque()
        self._early: list[tuple[int, ReadyJob]] = []  # released jobs older than the tail

    def push(self, job: ReadyJob, order: int) -> None:
        jobs = self._jobs
        if jobs and order < jobs[-1][0]:
            heapq.heappush(self._early, (order, job))
        else:
            jobs.append((order, job))

    def _early_first(self) -> bool:
        early = self._early
        return bool(early) and (not self._jobs or early[0][0] < self._jobs[0][0])

    def rank(self, now: float) -> tuple[Any, ...]:
        if self._early and self._early_first():
            return (self._early[0][0],)
        return (self._jobs[0][0],)

    def pop(self, now: float) -> ReadyJob:
        if self._early and self._early_first():
            return heapq.heappop(self._early)[1]
        return self._jobs.popleft()[1]

    def __len__(self) -> int:
        return len(self._jobs) + len(self._early)


class FifoStrategy(Strategy):
    name = "fifo"

    def new_queue(self) -> ReadyQueue:
        return FifoQueue()
