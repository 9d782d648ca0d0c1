"""Least-loaded: the next job goes to the worker with the most free capacity relative to
its size (free slots / slots; ties to the bigger worker); FIFO job order."""

from __future__ import annotations

from strategies.base import WorkerSlots
from strategies.fifo import FifoStrategy


class LeastLoadedStrategy(FifoStrategy):
    name = "least-loaded"

    def next_worker(self, hungry: list[WorkerSlots]) -> WorkerSlots:
        return max(hungry, key=lambda w: (w.credit / w.slots, w.slots, -w.joined))

    def per_turn(self, worker: WorkerSlots) -> int:
        return 1
