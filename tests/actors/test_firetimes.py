"""Fire times (issue 17) as the parser chosen (cronsim) gives them: 5 and 6 fields, time
zones, the daylight-saving days (a 02:30 daily in Europe/Berlin fires once on each), whole
intervals from a schedule's creation, the missed ones counted and the latest kept, and
every kind of bad spec refused with one line."""

from __future__ import annotations

import datetime

import msgspec
import pytest

from actors.client import job_spec
from actors.firetimes import MAX_WALK, FireTimes, describe, problem, spec_bytes, spec_of
from transport import protocol as wire

BERLIN = "Europe/Berlin"
UTC = datetime.UTC


def at(*fields: int, tz: str = "UTC") -> float:
    from actors.firetimes import zone

    return datetime.datetime(*fields, tzinfo=zone(tz)).timestamp()  # type: ignore[misc]


def walk(times: FireTimes, start: float, n: int) -> list[datetime.datetime]:
    out: list[datetime.datetime] = []
    t: float | None = start
    for _ in range(n):
        assert t is not None
        t = times.next_after(t)
        assert t is not None
        out.append(datetime.datetime.fromtimestamp(t, UTC))
    return out


def utc(*fields: int) -> datetime.datetime:
    return datetime.datetime(*fields, tzinfo=UTC)  # type: ignore[misc]


def test_a_0230_daily_in_berlin_fires_at_0300_on_the_spring_forward_day() -> None:
    """2026-03-29: clocks go from 02:00 to 03:00 CEST; 02:30 does not exist that day."""
    times = FireTimes("30 2 * * *", None, BERLIN, 0)
    assert walk(times, at(2026, 3, 27, 12, tz=BERLIN), 4) == [
        utc(2026, 3, 28, 1, 30),  # 02:30 CET
        utc(2026, 3, 29, 1, 0),  # 03:00 CEST, the first minute after 02:30 that exists
        utc(2026, 3, 30, 0, 30),  # 02:30 CEST
        utc(2026, 3, 31, 0, 30),
    ]


def test_a_0230_daily_in_berlin_fires_once_on_the_fall_back_day() -> None:
    """2026-10-25: 03:00 CEST goes back to 02:00 CET; 02:30 happens twice, fires once."""
    times = FireTimes("30 2 * * *", None, BERLIN, 0)
    assert walk(times, at(2026, 10, 23, 12, tz=BERLIN), 4) == [
        utc(2026, 10, 24, 0, 30),  # 02:30 CEST
        utc(2026, 10, 25, 0, 30),  # the first 02:30 (CEST); not the second (01:30 UTC)
        utc(2026, 10, 26, 1, 30),  # 02:30 CET
        utc(2026, 10, 27, 1, 30),
    ]


def test_from_inside_the_repeated_hour_the_next_fire_is_never_behind() -> None:
    """At 02:45 CET on the fall-back day (after both 02:30s), the next is the next day's."""
    times = FireTimes("30 2 * * *", None, BERLIN, 0)
    inside = utc(2026, 10, 25, 1, 45).timestamp()
    assert times.next_after(inside) == utc(2026, 10, 26, 1, 30).timestamp()


def test_an_hourly_expression_steps_in_real_time_through_both_changes() -> None:
    times = FireTimes("0 * * * *", None, BERLIN, 0)
    spring = walk(times, utc(2026, 3, 29, 0, 30).timestamp(), 2)
    assert spring == [utc(2026, 3, 29, 1), utc(2026, 3, 29, 2)]  # 03:00 and 04:00 CEST
    fall = walk(times, utc(2026, 10, 24, 23, 30).timestamp(), 3)
    # 02:00 CEST, 02:00 CET (an hour later in real time), 03:00 CET: each instant once
    assert fall == [utc(2026, 10, 25, 0), utc(2026, 10, 25, 1), utc(2026, 10, 25, 2)]


def test_six_fields_take_seconds_first() -> None:
    times = FireTimes("*/15 * * * * *", None, "UTC", 0)
    start = utc(2026, 1, 1, 0, 0, 7).timestamp()
    assert walk(times, start, 3) == [
        utc(2026, 1, 1, 0, 0, 15),
        utc(2026, 1, 1, 0, 0, 30),
        utc(2026, 1, 1, 0, 0, 45),
    ]


def test_an_interval_fires_on_whole_seconds_from_its_creation() -> None:
    times = FireTimes(None, 10, "UTC", 100.3)  # anchor 101
    assert times.next_after(100.3) == 111.0
    assert times.next_after(111.0) == 121.0
    assert times.next_after(125.5) == 131.0


def test_due_counts_the_missed_fire_times_and_keeps_the_latest() -> None:
    every = FireTimes(None, 1, "UTC", 0)
    assert every.due(10.0, 9.9, 1) == (0, [])
    assert every.due(10.0, 10.0, 1) == (1, [10.0])
    assert every.due(10.0, 14.5, 2) == (5, [13.0, 14.0])
    cron = FireTimes("* * * * * *", None, "UTC", 0)
    assert cron.due(10.0, 14.5, 2) == (5, [13.0, 14.0])


def test_a_gap_longer_than_the_walk_is_estimated_and_still_gives_the_latest() -> None:
    cron = FireTimes("* * * * * *", None, "UTC", 0)
    count, latest = cron.due(0.0, 7 * 86400.0, 3)
    assert count == 7 * 86400 + 1 > MAX_WALK
    assert latest == [7 * 86400.0 - 2, 7 * 86400.0 - 1, 7 * 86400.0]


def spec(**fields: object) -> wire.ScheduleSpec:
    fields.setdefault("job", job_spec("t"))
    return wire.ScheduleSpec("s", **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({}, "exactly one of cron"),
        ({"cron": "* * * * *", "every": 5}, "exactly one of cron"),
        ({"cron": "61 * * * *"}, "bad minute"),
        ({"cron": "* * *"}, "has 3 field(s)"),
        ({"cron": "0 0 31 2 *"}, "bad day-of-month"),
        ({"cron": "* * * * *", "tz": "Mars/Olympus"}, "unknown time zone 'Mars/Olympus'"),
        ({"every": 5, "tz": BERLIN}, "time zone applies to a cron expression only"),
        ({"every": 5, "job": job_spec("t", idempotency_key="k")}, "no idempotency key"),
        ({"every": 5, "job": job_spec("t", depends_on=[1])}, "cannot depend"),
        ({"every": 5, "job": job_spec("t", delay=3)}, "cannot be delayed"),
    ],
)
def test_a_bad_spec_is_named_in_one_line(fields: dict[str, object], says: str) -> None:
    why = problem(spec(**fields), 1e9)
    assert why is not None
    assert says in why
    assert "\n" not in why


def test_good_specs_pass_are_described_and_stored_as_they_came() -> None:
    for fields, shown in (
        ({"cron": "30  2 * * *", "tz": BERLIN}, "cron 30 2 * * *"),
        ({"cron": "*/5 * * * * *"}, "cron */5 * * * * *"),
        ({"every": 90}, "every 90s"),
        ({"every": 600}, "every 10m"),
        ({"every": 7200}, "every 2h"),
        ({"every": 86400}, "every 1d"),
    ):
        good = spec(**fields)
        assert problem(good, 1e9) is None
        assert describe(good) == shown
        assert spec_of(spec_bytes(good)) == good
    with pytest.raises(msgspec.ValidationError):
        msgspec.msgpack.decode(msgspec.msgpack.encode(spec(every=0)), type=wire.ScheduleSpec)
