"""The scheduler actor as its handler modules (``leases``, ``requests``, ``workflows``) see it.

Those modules hold the scheduler's handlers, kept apart to keep each module small; they
run inside the scheduler actor and use only what this protocol lists. Typing them against
it, not against ``actors.scheduler.scheduler.Scheduler``, keeps the imports one-way: the scheduler
imports its handlers, never the other way round.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from actors.metrics import Histogram
from actors.runtime import Actor
from actors.scheduler.effects import Effects
from actors.scheduler.jobs import Job, JobTable
from actors.scheduler.ratelog import RateLimitedLog
from actors.scheduler.store.actor import Ops
from transport import protocol as wire

Waiters = tuple[tuple[bytes, int]] | list[tuple[bytes, int]]


class SchedulerCore(Protocol):
    table: JobTable
    waiters: dict[int, Waiters]
    worker_names: dict[bytes, str]
    workflow_keys_in_flight: dict[str, list[tuple[bytes, wire.SubmitWorkflow]]]
    assign_latency: Histogram
    warn: RateLimitedLog
    strategy: Actor
    dispatcher: Actor
    dag: Actor

    def _send(self, peer: bytes, message: wire.Message) -> None: ...

    def _write(self, ops: Ops, effects: Effects) -> None: ...

    async def _find(self, ids: Iterable[int]) -> dict[int, Job]: ...

    async def _query(self, sql: str, params: list[Any]) -> list[tuple[Any, ...]]: ...

    def _place_new(self, job: Job, parents: dict[int, Job], ops: Ops, effects: Effects) -> None: ...
