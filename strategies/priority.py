"""Priority: higher priority first, FIFO among equals, with aging so nothing starves.

Aging without re-sorting: a job's heap key is ``enqueued_at - priority * aging``,
as if a job of priority p had arrived p * ``aging`` seconds earlier. Keys never
change after push, so push and pop stay O(log n), and a low-priority job can be
overtaken only by jobs that arrive less than ``(p_high - p_low) * aging``
seconds after it: its wait behind a flood is bounded by that.
"""

from __future__ import annotations

import heapq

from actors.messages import ReadyJob
from strategies.base import Strategy

# One second of queueing time per priority level: a priority-0 job waits at
# most 10 s behind a continuous flood of priority-10 jobs.
DEFAULT_AGING_S = 1.0


class PriorityStrategy(Strategy):
    name = "priority"

    def __init__(self, aging: float = DEFAULT_AGING_S) -> None:
        self.aging = aging
        self._queues: dict[str, list[tuple[float, int, ReadyJob]]] = {}
        self._size = 0

    def push(self, job: ReadyJob) -> None:
        heap = self._queues.get(job.queue)
        if heap is None:
            heap = self._queues[job.queue] = []
        heapq.heappush(heap, (job.enqueued_at - job.priority * self.aging, job.seq, job))
        self._size += 1

    def pop(self, queues: tuple[str, ...]) -> ReadyJob | None:
        best: list[tuple[float, int, ReadyJob]] | None = None
        for name in queues:
            heap = self._queues.get(name)
            if heap and (best is None or heap[0] < best[0]):
                best = heap
        if best is None:
            return None
        self._size -= 1
        return heapq.heappop(best)[2]

    def __len__(self) -> int:
        return self._size

    def depth(self) -> dict[str, int]:
        return {name: len(h) for name, h in self._queues.items()}
