"""The schedules' part of the wire protocol (issue 17): what a schedule is (``ScheduleSpec``),
what a client may read of one (``ScheduleView``), the requests that add, list, pause,
resume and remove schedules, and the one reply they get. ``transport.protocol``
re-exports all of it and lists the messages in its unions; import from there.

A schedule creates one job per fire time: a cron expression (5 fields, or 6 with seconds
first) read in a time zone, or a fixed interval in whole seconds. Whether a cron
expression and a time zone are valid is for the scheduler to say (``actors.firetimes``):
the schema only bounds the sizes.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from transport.message import Message
from transport.payloads import JobSpec, RequestId

# Letters, digits and _ . -: a schedule's jobs are keyed "schedule:NAME:FIRE_TIME", so a
# name holds no colon, and it is shown in tables without quoting.
ScheduleName = Annotated[
    str, msgspec.Meta(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.-]+$")
]
# What to do with the fire times that passed while no scheduler could fire them.
Missed = Literal["latest", "all", "skip"]
# The longest interval: a year (a longer one is a cron expression's job).
MAX_EVERY_S = 366 * 24 * 3600


class ScheduleSpec(msgspec.Struct, frozen=True, array_like=True):
    """A schedule as its author gives it: exactly one of ``cron`` and ``every``."""

    name: ScheduleName
    job: JobSpec  # the job each fire time creates (no key, parents or delay of its own)
    cron: Annotated[str, msgspec.Meta(min_length=1, max_length=256)] | None = None
    every: Annotated[int, msgspec.Meta(ge=1, le=MAX_EVERY_S)] | None = None
    tz: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] = "UTC"
    missed: Missed = "latest"
    # Skip (and count) a fire time while the job of the previous one has not ended.
    no_overlap: bool = False


class ScheduleView(msgspec.Struct, frozen=True):
    """Everything a client may read about one schedule."""

    name: str
    spec: str  # "cron 30 2 * * *" or "every 10s"
    tz: str
    task: str
    queue: str
    missed: str
    no_overlap: bool
    paused: bool
    created_at: float
    next_fire: float | None  # None: paused, or the expression never matches again
    last_fire: float | None = None  # the newest fire time that created a job
    last_job_id: int | None = None  # that job (None also where a client key may not see it)
    last_job_state: str | None = None
    skipped: int = 0  # fire times that created no job: overlap, and the missed-policy's


class AddSchedule(Message, frozen=True):
    """Add a schedule; adding one that exists with the same spec changes nothing."""

    request_id: RequestId
    schedule: ScheduleSpec


class ListSchedules(Message, frozen=True):
    request_id: RequestId


class ChangeSchedule(Message, frozen=True):
    request_id: RequestId
    name: ScheduleName
    action: Literal["pause", "resume", "remove"]


class ScheduleReply(Message, frozen=True):
    """The schedules a request named, added or changed (a removed one as it was last)."""

    request_id: int
    schedules: list[ScheduleView]
    existing: bool = False  # an AddSchedule found the same schedule there already
