"""The wire messages of rate limits (``corral limit set | list | remove``) and the status's
view of concurrency keys and limits. ``transport.protocol`` re-exports all of it.

A limit is a token bucket held by the scheduler: ``count`` jobs per ``period`` seconds on
average, at most ``burst`` at once. It applies to the jobs whose task, or whose concurrency
key, is ``name``.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from transport.message import Message

# A task name or a concurrency key (the same bounds as a task name).
LimitName = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
# Jobs per period: one to a million. Periods: a second, a minute, an hour (the CLI's /s,
# /m, /h), up to a day for a hand-built frame.
Count = Annotated[int, msgspec.Meta(ge=1, le=1_000_000)]
Period = Annotated[float, msgspec.Meta(gt=0, le=86_400)]


class LimitView(msgspec.Struct, frozen=True):
    """One rate limit, and (in a status) the ready jobs waiting for its next token.
    ``declared``: the task's own (``@task(rate_limit=...)``), not set by an admin."""

    name: str
    count: int
    period: float
    burst: int
    waiting: int = 0
    declared: bool = False


class GateView(msgspec.Struct, frozen=True):
    """One concurrency key at its limit: jobs running, its maximum, jobs waiting QUEUED."""

    key: str
    running: int
    max_concurrent: int
    waiting: int = 0


# A task's own rate limit, as its workers declare it at hello: (task, count, period, burst).
DeclaredLimit = tuple[LimitName, Count, Period, Count]


class SetLimit(Message, frozen=True):
    """Create or change a rate limit (admin when keys are on)."""

    request_id: int
    name: LimitName
    count: Count
    period: Period
    burst: Count


class RemoveLimit(Message, frozen=True):
    request_id: int
    name: LimitName


class ListLimits(Message, frozen=True):
    request_id: int


class LimitsReply(Message, frozen=True):
    """The limits after a set or remove, or as listed; by name."""

    request_id: int
    limits: list[LimitView]
