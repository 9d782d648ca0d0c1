"""FIFO: ready jobs in arrival order within each queue."""

from __future__ import annotations

from collections import deque
from typing import Any

from actors.scheduler.messages import ReadyJob
from strategies.base import ReadyQueue, Strategy


class FifoQueue:
    def __init__(self) -> None:
        self._jobs: deque[tuple[int, ReadyJob]] = deque()

    def push(self, job: ReadyJob, order: int) -> None:
        self._jobs.append((order, job))

    def rank(self, now: float) -> tuple[Any, ...]:
        return (self._jobs[0][0],)

    def pop(self, now: float) -> ReadyJob:
        return self._jobs.popleft()[1]

    def oldest(self) -> ReadyJob:
        return self._jobs[0][1]

    def __len__(self) -> int:
        return len(self._jobs)


class FifoStrategy(Strategy):
    name = "fifo"

    def new_queue(self) -> ReadyQueue:
        return FifoQueue()
