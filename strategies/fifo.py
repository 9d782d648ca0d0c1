"""FIFO: ready jobs in submission order within each queue."""

from __future__ import annotations

from collections import deque

from actors.messages import ReadyJob
from strategies.base import ReadyQueue, Strategy


class FifoQueue:
    def __init__(self) -> None:
        self._jobs: deque[ReadyJob] = deque()

    def push(self, job: ReadyJob) -> None:
        self._jobs.append(job)

    def pop(self) -> ReadyJob:
        return self._jobs.popleft()

    def __len__(self) -> int:
        return len(self._jobs)


class FifoStrategy(Strategy):
    name = "fifo"

    def new_queue(self) -> ReadyQueue:
        return FifoQueue()
