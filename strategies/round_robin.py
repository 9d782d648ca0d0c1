"""Round-robin: one job at a time to each worker with free slots, in turn; FIFO job order.

The worker served longest ago goes next (ties: the earliest joined), so assignments
rotate evenly across the workers that have free slots and may run the job; a worker
with no free slot is skipped, never over-filled. Across queues, the base class's
weighted-fair choice applies.
"""

from __future__ import annotations

from typing import Any

from strategies.fifo import FifoStrategy
from strategies.index import Worker


class RoundRobinStrategy(FifoStrategy):
    name = "round-robin"

    def worker_key(self, worker: Worker) -> tuple[Any, ...]:
        return (worker.served_at, worker.joined)

    def per_turn(self, worker: Worker) -> int:
        return 1
