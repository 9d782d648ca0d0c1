"""Least-loaded: the next job goes to the worker with the most free capacity relative to
its size (free slots / slots; ties to the bigger worker); FIFO job order."""

from __future__ import annotations

from typing import Any

from strategies.fifo import FifoStrategy
from strategies.index import Worker


class LeastLoadedStrategy(FifoStrategy):
    name = "least-loaded"

    def worker_key(self, worker: Worker) -> tuple[Any, ...]:
        return (-worker.credit / max(1, worker.slots), -worker.slots, worker.joined)

    def per_turn(self, worker: Worker) -> int:
        return 1
