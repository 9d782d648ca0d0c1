"""Round-robin: one job at a time to each worker with free slots, in turn; FIFO job order.

Assignments rotate evenly across the workers that have free slots (a worker
with no free slot is skipped, never over-filled); across queues, the base
class's weighted-fair choice applies.
"""

from __future__ import annotations

from strategies.base import WorkerSlots
from strategies.fifo import FifoStrategy


class RoundRobinStrategy(FifoStrategy):
    name = "round-robin"

    def __init__(self, weights: dict[str, float] | None = None) -> None:
        super().__init__(weights)
        self._last = -1  # join order of the worker served last

    def next_worker(self, hungry: list[WorkerSlots]) -> WorkerSlots:
        after = [w for w in hungry if w.joined > self._last]
        chosen = min(after or hungry, key=lambda w: w.joined)
        self._last = chosen.joined
        return chosen

    def per_turn(self, worker: WorkerSlots) -> int:
        return 1
