"""What the scheduler's handler modules (``submissions``, ``leases``, ``requests``,
``workflows``) may use: its state (the job table, waiters, worker names), the store actor
to read from, and its public outputs (send a frame, write a batch, find jobs).

Those modules hold the scheduler's handlers, kept apart to keep each module small; they
run inside the scheduler actor and use only what this protocol lists. Typing them against
it, not against ``actors.scheduler.scheduler.Scheduler``, keeps the imports one-way: the
scheduler imports its handlers, never the other way round.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from actors.metrics import Histogram
from actors.runtime import Actor
from actors.scheduler.effects import Effects
from actors.scheduler.jobs import Job, JobTable
from actors.scheduler.ops import Ops
from actors.scheduler.quotas import Quotas
from actors.scheduler.ratelog import RateLimitedLog
from actors.scheduler.schedule_book import ScheduleBook
from transport import Identity
from transport import protocol as wire

Waiters = tuple[tuple[bytes, int]] | list[tuple[bytes, int]]


class SchedulerCore(Protocol):
    table: JobTable
    waiters: dict[int, Waiters]
    worker_names: dict[bytes, str]
    worker_tasks: dict[bytes, frozenset[str]]
    workflow_keys_in_flight: dict[str, list[tuple[bytes, wire.SubmitWorkflow]]]
    assign_latency: Histogram
    quotas: Quotas
    warn: RateLimitedLog
    strategy: Actor
    dispatcher: Actor
    dag: Actor
    store: Actor  # reads go through it: actors.scheduler.store.actor.read
    events: Actor
    limits: dict[str, wire.LimitView]  # rate limits by name (actors.scheduler.limits)
    schedules: ScheduleBook  # actors.scheduler.schedules

    def identity(self, peer: bytes) -> Identity | None:
        """Who ``peer`` is, as the transport proved it (None without keys)."""
        ...

    def send(self, peer: bytes, message: wire.Message) -> None: ...

    def write(self, ops: Ops, effects: Effects) -> None: ...

    async def find(self, ids: Iterable[int]) -> dict[int, Job]: ...
