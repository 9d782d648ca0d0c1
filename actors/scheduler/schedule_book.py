"""The scheduler's schedules in memory (issue 17): each one's spec, owner and counters, a
heap of the next fire times (the scheduler arms ONE timer for the earliest of these and of
its delayed jobs, never one per schedule), and the missed-fire-time policies. Plain state:
no I/O; ``actors.scheduler.schedules`` acts on it and writes it.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Iterable
from typing import Any

from actors.firetimes import FireTimes, describe, spec_bytes, spec_of
from actors.scheduler.store.base import ScheduleRecord
from transport import protocol as wire

# With ``missed="all"``, the most fire times one schedule runs at once after a gap: the
# latest this many; the older ones are skipped (and counted), so a long outage cannot
# flood the queues with a schedule's backlog.
MAX_CATCH_UP = 100
# With ``missed="skip"``, a fire time is still on time this long after it (what a busy
# loop or a commit may delay a timer by; APScheduler's misfire grace time defaults to the
# same second). Anything older was missed, and is skipped.
ON_TIME_S = 1.0


class Schedule:
    """One schedule: its spec, and what it did last."""

    def __init__(
        self,
        spec: wire.ScheduleSpec,
        owner: str,
        created_at: float,
        next_fire: float | None,
        last_fire: float | None = None,
        last_job: int | None = None,
        skipped: int = 0,
        paused: bool = False,
    ) -> None:
        self.spec = spec
        self.owner = owner
        self.created_at = created_at
        self.next_fire = next_fire
        self.last_fire = last_fire
        self.last_job = last_job
        self.skipped = skipped
        self.paused = paused
        self.times = FireTimes.of(spec, created_at)

    @property
    def name(self) -> str:
        return self.spec.name

    @classmethod
    def from_record(cls, record: ScheduleRecord) -> Schedule:
        return cls(
            spec_of(record.spec),
            record.owner,
            record.created_at,
            record.next_fire,
            record.last_fire,
            record.last_job,
            record.skipped,
            record.paused,
        )

    def row(self) -> tuple[Any, ...]:
        """Its stored row (``actors.scheduler.ops.SCHEDULE_FIELDS``)."""
        return (
            self.name,
            spec_bytes(self.spec),
            self.owner,
            self.created_at,
            self.next_fire,
            self.last_fire,
            self.last_job,
            self.skipped,
            self.paused,
        )

    def plan(self, now: float) -> tuple[list[float], int]:
        """The due fire times to run now, oldest first, and how many due ones to skip, as
        the schedule's missed policy says: ``latest`` runs the newest due one, ``all`` up
        to MAX_CATCH_UP of the newest, ``skip`` the newest only if it is on time."""
        if self.next_fire is None or self.paused:
            return [], 0
        keep = MAX_CATCH_UP if self.spec.missed == "all" else 1
        count, runs = self.times.due(self.next_fire, now, keep)
        if self.spec.missed == "skip" and runs and now - runs[-1] > ON_TIME_S:
            runs = []
        return runs, count - len(runs)

    def view(self, last_job_state: str | None, show_job: bool = True) -> wire.ScheduleView:
        spec = self.spec
        return wire.ScheduleView(
            self.name,
            describe(spec),
            spec.tz,
            spec.job.task,
            spec.job.queue,
            spec.missed,
            spec.no_overlap,
            self.paused,
            self.created_at,
            None if self.paused else self.next_fire,
            self.last_fire,
            self.last_job if show_job else None,
            last_job_state if show_job else None,
            self.skipped,
        )


def fire_key(name: str, fire: float) -> str:
    """The idempotency key of the job schedule ``name`` creates for fire time ``fire``:
    unique in the store, so a fire time can never have two jobs."""
    return f"schedule:{name}:{int(fire)}"


# Submitted jobs may not take a key of this shape: it would stand in for a fire time's job.
RESERVED_KEY_PREFIX = "schedule:"


class ScheduleBook:
    """Every schedule by name, and a heap of (next fire time, name) for the timer."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.by_name: dict[str, Schedule] = {}
        self._heap: list[tuple[float, str]] = []

    def load(self, records: Iterable[ScheduleRecord]) -> None:
        """The schedules read from the store at start-up (their due fire times fire at
        once, per their missed policy, when the scheduler's timer first runs)."""
        for record in records:
            self.put(Schedule.from_record(record))

    def put(self, schedule: Schedule) -> None:
        """Hold ``schedule`` (new, or changed): its next fire time goes on the heap."""
        self.by_name[schedule.name] = schedule
        if schedule.next_fire is not None and not schedule.paused:
            heapq.heappush(self._heap, (schedule.next_fire, schedule.name))

    def add(self, spec: wire.ScheduleSpec, owner: str) -> Schedule:
        now = self.clock()
        schedule = Schedule(spec, owner, now, None)
        schedule.next_fire = schedule.times.next_after(now)
        self.put(schedule)
        return schedule

    def remove(self, name: str) -> Schedule | None:
        return self.by_name.pop(name, None)  # its heap entry goes stale

    def pause(self, schedule: Schedule) -> None:
        schedule.paused = True  # its heap entry goes stale

    def resume(self, schedule: Schedule) -> None:
        """Fire again from the next fire time after now: those passed while paused are
        not missed ones, they were paused."""
        schedule.paused = False
        schedule.next_fire = schedule.times.next_after(self.clock())
        self.put(schedule)

    def next_at(self) -> float | None:
        """The earliest next fire time of any active schedule."""
        heap = self._heap
        while heap and not self._current(*heap[0]):
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def pop_due(self, now: float) -> list[Schedule]:
        """The active schedules whose next fire time has come, off the heap (``put`` one
        back once it has fired)."""
        due: list[Any] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            fire, name = heapq.heappop(heap)
            schedule = self.by_name.get(name)
            if self._current(fire, name) and schedule not in due:
                due.append(schedule)
        return due

    def _current(self, fire: float, name: str) -> bool:
        schedule = self.by_name.get(name)
        return schedule is not None and not schedule.paused and schedule.next_fire == fire
