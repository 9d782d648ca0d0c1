"""When a schedule fires (issue 17): the fire times of a cron expression read in a time
zone, or of a fixed interval, as Unix times; and what is wrong with a schedule's spec.

Cron expressions are parsed and stepped by cronsim (the parser Healthchecks runs in
production: maintained, typed, no dependencies, written for ``zoneinfo``): 5 fields, or 6
with seconds first. Across daylight-saving changes it behaves as Debian's cron does: a
fixed-time expression (both minute and hour fields fixed, 5 fields) whose time does not
exist on the spring-forward day (02:30 in Europe/Berlin) fires at the first minute that
exists after it (03:00), and one whose time happens twice on the fall-back day fires once,
at the first. Expressions with a wildcard minute or hour, and 6-field ones, step in real
time: each real instant that matches fires once.

An interval of ``every`` seconds fires at ``anchor + k * every`` (k = 1, 2, ...), the
anchor being the schedule's creation time rounded up to a whole second: fire times are
whole seconds, so "schedule:NAME:FIRE_TIME" keys are exact.

Everything here is pure and synchronous; the scheduler (``actors.scheduler.schedules``)
decides what a fire time does.
"""

from __future__ import annotations

import collections
import datetime
import math
import zoneinfo
from functools import lru_cache

import msgspec
from cronsim import CronSim, CronSimError

from transport import protocol as wire

# The most fire times walked one by one to count or find the missed ones after a gap: a
# cron step costs up to about 50 microseconds (a daily expression), so this bounds the
# loop's stall to about 50 ms. Beyond it the count of missed fire times is estimated (``due``).
MAX_WALK = 1_000


@lru_cache(maxsize=256)
def zone(name: str) -> zoneinfo.ZoneInfo:
    """The time zone ``name`` (an IANA name such as Europe/Berlin); ValueError, one line,
    for an unknown one."""
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(
            f"unknown time zone {name!r}: use an IANA name such as UTC, Europe/Berlin or "
            "America/New_York"
        ) from None


def cron_problem(expression: str) -> str | None:
    """What is wrong with a cron expression, or None."""
    fields = expression.split()
    if len(fields) not in (5, 6):
        return (
            f"cron expression {expression!r} has {len(fields)} field(s); give 5 (minute hour "
            "day-of-month month day-of-week) or 6 (seconds first)"
        )
    try:
        CronSim(expression, datetime.datetime.now(datetime.UTC))
    except CronSimError as exc:
        return f"cron expression {expression!r}: {str(exc).lower() or 'not understood'}"
    return None


def problem(spec: wire.ScheduleSpec, now: float) -> str | None:
    """What is wrong with ``spec`` (one line), or None when it can be added at ``now``."""
    if (spec.cron is None) == (spec.every is None):
        return "give exactly one of cron (an expression) and every (seconds)"
    try:
        zone(spec.tz)
    except ValueError as exc:
        return str(exc)
    if spec.every is not None and spec.tz != "UTC":
        return "a time zone applies to a cron expression only, not to an interval"
    if spec.cron is not None:
        why = cron_problem(spec.cron)
        if why is not None:
            return why
        if FireTimes.of(spec, now).next_after(now) is None:
            return f"cron expression {spec.cron!r} never fires (no match in the next 50 years)"
    job = spec.job
    if job.idempotency_key is not None:
        return "a schedule's job has no idempotency key of its own: each fire time gets one"
    if job.depends_on:
        return "a schedule's job cannot depend on other jobs"
    if job.delay or job.run_at:
        return "a schedule's job cannot be delayed: the schedule says when it runs"
    return None


def describe(spec: wire.ScheduleSpec) -> str:
    """How a schedule's timing is shown: "cron 30 2 * * *" or "every 10s"."""
    if spec.cron is not None:
        return f"cron {' '.join(spec.cron.split())}"
    return f"every {_duration(spec.every or 0)}"


def _duration(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0 and seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


class FireTimes:
    """The fire times of one schedule."""

    def __init__(self, cron: str | None, every: int | None, tz: str, anchor: float) -> None:
        self.cron = cron
        self.every = every
        self.tz = zone(tz)
        self.anchor = float(math.ceil(anchor))

    @classmethod
    def of(cls, spec: wire.ScheduleSpec, created_at: float) -> FireTimes:
        return cls(spec.cron, spec.every, spec.tz, created_at)

    def next_after(self, t: float) -> float | None:
        """The first fire time strictly after ``t``; None if there is none (a cron
        expression that matches nothing in the next 50 years)."""
        if self.every is not None:
            k = max(1, math.floor((t - self.anchor) / self.every) + 1)
            return self.anchor + k * self.every
        assert self.cron is not None
        it = CronSim(self.cron, datetime.datetime.fromtimestamp(t, self.tz))
        try:
            while True:
                fire = next(it).timestamp()
                # Stepping in wall-clock time from inside a repeated (fall-back) hour
                # can land on the first pass of a time already behind ``t``.
                if fire > t:
                    return fire
        except StopIteration:
            return None

    def due(self, start: float, now: float, keep: int) -> tuple[int, list[float]]:
        """The fire times from ``start`` (a fire time) to ``now``, both included: how many,
        and the latest ``keep`` of them (>= 1), oldest first. The count is exact up to
        ``MAX_WALK`` fire times; past that, estimated from their average spacing."""
        if now < start:
            return 0, []
        if self.every is not None:
            n = math.floor((now - start) / self.every) + 1
            first = max(0, n - keep)
            return n, [start + i * self.every for i in range(first, n)]
        count, latest, reached = self._walk(start, now, keep)
        if reached is None or reached > now:
            return count, latest
        # More than MAX_WALK missed: find the latest ones in a window that holds them.
        spacing = max(1.0, (reached - start) / count)
        window = spacing * (keep + 1) * 2
        while True:
            begin = max(start, now - window)
            n, latest, _ = self._walk(begin, now, keep)
            if n >= keep or begin == start:
                break
            window *= 4
        return count + math.floor((now - reached) / spacing) + 1, latest

    def _walk(self, start: float, now: float, keep: int) -> tuple[int, list[float], float | None]:
        """Walk fire times from ``start`` up to ``now`` (at most MAX_WALK of them): how many,
        the latest ``keep``, and the first one not walked (None: no more fire times)."""
        latest: collections.deque[float] = collections.deque(maxlen=keep)
        count = 0
        fire = start if self._fires_at(start) else self.next_after(start)
        while fire is not None and fire <= now and count < MAX_WALK:
            count += 1
            latest.append(fire)
            fire = self.next_after(fire)
        return count, list(latest), fire

    def _fires_at(self, t: float) -> bool:
        return t == math.floor(t) and self.next_after(t - 1) == t


def spec_bytes(spec: wire.ScheduleSpec) -> bytes:
    """The stored form of a schedule's spec (msgpack, as on the wire)."""
    return msgspec.msgpack.encode(spec)


_decode_spec = msgspec.msgpack.Decoder(wire.ScheduleSpec).decode


def spec_of(data: bytes) -> wire.ScheduleSpec:
    """A stored spec back (``spec_bytes``)."""
    return _decode_spec(data)
