"""The strategy interface: a ready queue that decides which job goes to which worker slot.

A strategy holds ready jobs (``push``) and hands out the next one for a given
worker (``pop``). The strategy actor calls ``order_workers`` to decide which
worker with free slots is served first and ``per_turn`` to decide how many
jobs one worker takes before the next worker's turn. Implementations are
plain data structures: no I/O, no awaits, O(log n) per operation.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar

from actors.messages import ReadyJob


@dataclass(slots=True)
class WorkerSlots:
    """What the strategy knows of one worker: its queues and its free slots (credit)."""

    peer: bytes
    name: str
    queues: tuple[str, ...]
    slots: int
    credit: int


class Strategy(abc.ABC):
    name: ClassVar[str]

    @abc.abstractmethod
    def push(self, job: ReadyJob) -> None:
        """Add a ready job."""

    @abc.abstractmethod
    def pop(self, queues: tuple[str, ...]) -> ReadyJob | None:
        """Remove and return the next job from any of ``queues``, or None if they are empty."""

    @abc.abstractmethod
    def __len__(self) -> int:
        """Ready jobs held."""

    def depth(self) -> dict[str, int]:
        """Ready jobs per queue."""
        return {}

    def order_workers(self, workers: list[WorkerSlots]) -> Iterable[WorkerSlots]:
        """Workers with free slots, in the order they are served. Default: most free first."""
        return sorted(workers, key=lambda w: -w.credit)

    def per_turn(self, worker: WorkerSlots) -> int:
        """How many jobs a worker takes in one turn. Default: all its free slots (one frame)."""
        return worker.credit
