"""Delayed jobs in the job table (issue 17): a job with a delay or a time is created PENDING
with ``not_before``, waits in the same heap as retries (one timer for the earliest), is
queued at its time and never before; a job that waits on parents enters the heap only when
they are done; and the command line's spellings of durations and times."""

from __future__ import annotations

import pytest

from actors.cli.times import parse_duration, parse_time
from actors.config import SchedulerConfig
from actors.lifecycle import JobState
from actors.scheduler.jobs import JobTable
from actors.scheduler.ops import Ops
from transport import protocol as wire


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def test_a_delayed_job_is_queued_at_its_time_and_not_before() -> None:
    clock = Clock()
    table = JobTable(SchedulerConfig(), clock=clock)
    ops = Ops()
    later = table.create(wire.JobSpec("t", delay=30.0), ops)
    latest = table.create(wire.JobSpec("t", delay=5.0, run_at=1_100.0), ops)
    assert (later.not_before, latest.not_before) == (1_030.0, 1_100.0), "the later of the two"
    assert table.defer(later)
    assert table.defer(latest)
    assert later.status is JobState.PENDING
    assert table.next_retry_at() == 1_030.0
    clock.now = 1_029.999
    assert table.due_retries(ops) == []
    clock.now = 1_030.0
    assert table.due_retries(ops) == [later]
    assert later.status is JobState.QUEUED
    assert latest.status is JobState.PENDING


def test_a_time_already_past_queues_at_once() -> None:
    table = JobTable(SchedulerConfig(), clock=Clock())
    job = table.create(wire.JobSpec("t", run_at=10.0), Ops())
    assert job.not_before == 0.0
    assert not table.defer(job)


def test_only_jobs_free_of_parents_wait_in_the_heap_after_a_restart() -> None:
    clock = Clock()
    first = JobTable(SchedulerConfig(), clock=clock)
    ops = Ops()
    parent = first.create(wire.JobSpec("t"), ops)
    child = first.create(wire.JobSpec("t", depends_on=[parent.id], delay=60.0), ops)
    alone = first.create(wire.JobSpec("t", delay=60.0), ops)
    second = JobTable(SchedulerConfig(), clock=clock)
    second.admit([parent, child, alone])
    clock.now += 61
    assert second.due_retries(Ops()) == [alone], "the child waits for its parent first"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30", 30.0), ("30s", 30.0), ("1.5", 1.5), ("5m", 300.0), ("1h30m", 5400.0),
     ("2d", 172800.0), ("250ms", 0.25), (" 2 m ", 120.0)],
)  # fmt: skip
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["soon", "-5s", "5x", "1h-3m", "", "nan", "inf"])
def test_nonsense_durations_say_what_was_expected(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_times() -> None:
    assert parse_time("2026-12-01T09:00:00Z") == 1_796_115_600.0
    assert parse_time("2026-12-01T10:00:00+01:00") == 1_796_115_600.0
    with pytest.raises(ValueError, match="ISO 8601"):
        parse_time("tomorrow")
