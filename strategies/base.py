"""The strategy interface: ready queues, and which job goes to which worker slot.

A strategy holds ready jobs in one container per queue. It answers two questions
for the strategy actor:

- ``next_worker(hungry)``: which worker with free slots is served next, and
  ``per_turn(worker)``: how many jobs it takes in that turn;
- ``pop(queues)``: the next job for a worker that serves ``queues``.

Across the queues a worker serves, ``pop`` is weighted-fair: it takes from the
non-empty queue that has received the least service relative to its weight
(start-time fair queuing), so a flood on one queue cannot starve another that
shares the same workers, and weights split the share (``heavy=1,light=3``).
Within a queue, the order is the subclass's: FIFO or priority. Every operation
is O(log n) in the ready jobs (O(q) in the queues a worker serves, a handful).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import ClassVar, Protocol

from actors.messages import ReadyJob


@dataclass(slots=True)
class WorkerSlots:
    """What the strategy knows of one worker: its queues and its free slots (credit)."""

    peer: bytes
    name: str
    queues: tuple[str, ...]
    slots: int
    credit: int
    joined: int = 0  # join order, for stable rotation


class ReadyQueue(Protocol):
    """One queue's ready jobs, in the order the strategy serves them."""

    def push(self, job: ReadyJob) -> None: ...
    def pop(self) -> ReadyJob: ...
    def __len__(self) -> int: ...


def _band_of(priority: int) -> int:
    return 0 if priority > 0 else 1 if priority == 0 else 2


class Strategy(abc.ABC):
    name: ClassVar[str]

    def __init__(self, weights: dict[str, float] | None = None) -> None:
        self.weights = weights or {}
        self._queues: dict[str, ReadyQueue] = {}
        self._served: dict[str, float] = {}  # service received / weight, per queue
        self._bands: dict[str, list[int]] = {}  # per queue: ready jobs [high, normal, low]
        self._size = 0

    @abc.abstractmethod
    def new_queue(self) -> ReadyQueue:
        """An empty container for one queue's ready jobs."""

    # ---------------------------------------------------------------- jobs

    def push(self, job: ReadyJob) -> None:
        queue = self._queues.get(job.queue)
        if queue is None:
            queue = self._queues[job.queue] = self.new_queue()
        if not len(queue):
            # A queue that was idle starts level with the busiest active one, not with
            # credit for the time it was empty (which would let it starve the others).
            active = [
                self._served[q] for q, c in self._queues.items() if len(c) and q in self._served
            ]
            self._served[job.queue] = max(
                self._served.get(job.queue, 0.0), min(active, default=0.0)
            )
        queue.push(job)
        self._size += 1
        self._band(job)[_band_of(job.priority)] += 1

    def pop(self, queues: tuple[str, ...]) -> ReadyJob | None:
        """The next job from the least-served non-empty queue among ``queues``."""
        best: str | None = None
        for name in queues:
            queue = self._queues.get(name)
            if queue and (best is None or self._served[name] < self._served[best]):
                best = name
        if best is None:
            return None
        self._served[best] += 1.0 / self.weights.get(best, 1.0)
        self._size -= 1
        job = self._queues[best].pop()
        self._band(job)[_band_of(job.priority)] -= 1
        return job

    def _band(self, job: ReadyJob) -> list[int]:
        bands = self._bands.get(job.queue)
        if bands is None:
            bands = self._bands[job.queue] = [0, 0, 0]
        return bands

    def bands(self) -> dict[str, tuple[int, int, int]]:
        """Ready jobs per queue by priority band: (high > 0, normal = 0, low < 0)."""
        return {name: (b[0], b[1], b[2]) for name, b in self._bands.items()}

    def __len__(self) -> int:
        return self._size

    def depth(self) -> dict[str, int]:
        """Ready jobs per queue."""
        return {name: len(q) for name, q in self._queues.items()}

    # ------------------------------------------------------------- workers

    def next_worker(self, hungry: list[WorkerSlots]) -> WorkerSlots:
        """Which worker with free slots is served next. Default: the one with most free slots."""
        return max(hungry, key=lambda w: (w.credit, -w.joined))

    def per_turn(self, worker: WorkerSlots) -> int:
        """Jobs a worker takes in one turn. Default: all its free slots (one frame)."""
        return worker.credit
