"""FIFO: ready jobs in submission order, per queue; across a worker's queues the oldest first."""

from __future__ import annotations

from collections import deque

from actors.messages import ReadyJob
from strategies.base import Strategy


class FifoStrategy(Strategy):
    name = "fifo"

    def __init__(self) -> None:
        self._queues: dict[str, deque[ReadyJob]] = {}
        self._size = 0

    def push(self, job: ReadyJob) -> None:
        queue = self._queues.get(job.queue)
        if queue is None:
            queue = self._queues[job.queue] = deque()
        queue.append(job)
        self._size += 1

    def pop(self, queues: tuple[str, ...]) -> ReadyJob | None:
        best: deque[ReadyJob] | None = None
        for name in queues:
            queue = self._queues.get(name)
            if queue and (best is None or queue[0].seq < best[0].seq):
                best = queue
        if best is None:
            return None
        self._size -= 1
        return best.popleft()

    def __len__(self) -> int:
        return self._size

    def depth(self) -> dict[str, int]:
        return {name: len(q) for name, q in self._queues.items()}
