"""The job table's state machine, with a fake clock: compare-and-swap leases, fencing tokens,
backoff bounds, one heap for all retries."""

from __future__ import annotations

import pytest

from actors.config import SchedulerConfig
from actors.errors import IllegalTransition
from actors.lifecycle import JobState
from actors.scheduler.jobs import JobTable, backoff_delay
from actors.scheduler.ops import Ops
from transport import protocol as wire


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def table(clock: FakeClock) -> JobTable:
    config = SchedulerConfig(backoff_base=1.0, backoff_factor=2.0, backoff_cap=5.0)
    return JobTable(config, clock=clock, rand=lambda: 1.0)


def queued(table: JobTable, max_retries: int = 3) -> int:
    ops = Ops()
    job = table.create(wire.JobSpec("t", max_retries=max_retries), ops)
    table.move(job, JobState.QUEUED, ops)
    return job.id


def test_leasing_is_a_compare_and_swap_that_issues_a_larger_token(table: JobTable) -> None:
    job_id = queued(table)
    ops = Ops()
    first = table.lease(job_id, b"peer-a", "a", ops)
    assert first is not None
    assert first.token == 1
    assert table.lease(job_id, b"peer-b", "b", ops) is None, "a RUNNING job cannot be leased again"
    assert ops.updates[-1][-1] == "QUEUED", "the SQL update is guarded by the expected status"


def test_only_the_current_holder_with_the_current_token_may_report(table: JobTable) -> None:
    job_id = queued(table)
    ops = Ops()
    table.lease(job_id, b"peer-a", "a", ops)
    assert table.holder_of(job_id, 1, b"peer-a") is not None
    assert table.holder_of(job_id, 0, b"peer-a") is None
    assert table.holder_of(job_id, 1, b"peer-b") is None
    job = table.jobs[job_id]
    table.fail_attempt(job, "boom", "error", ops)
    table.due_retries(ops)  # backoff not elapsed: still PENDING
    assert job.status is JobState.PENDING
    assert table.holder_of(job_id, 1, b"peer-a") is None, "a failed attempt's token is dead"


def test_retries_back_off_exponentially_up_to_the_cap(table: JobTable, clock: FakeClock) -> None:
    job_id = queued(table, max_retries=4)
    job = table.jobs[job_id]
    delays = []
    for attempt in range(1, 5):
        ops = Ops()
        assert table.lease(job_id, b"p", "w", ops) is not None
        assert job.attempts == attempt
        table.fail_attempt(job, f"fail {attempt}", "error", ops)
        assert job.status is JobState.PENDING
        delays.append(job.not_before - clock.now)
        clock.now = job.not_before - 0.001
        assert table.due_retries(Ops()) == []
        clock.now = job.not_before
        assert table.due_retries(Ops()) == [job]
    assert delays == [1.0, 2.0, 4.0, 5.0]
    ops = Ops()
    table.lease(job_id, b"p", "w", ops)
    table.fail_attempt(job, "last", "error", ops)
    assert job.status is JobState.FAILED
    assert len(ops.attempts) == 1


def test_backoff_jitter_stays_within_half_to_full_delay() -> None:
    backoff = wire.Backoff(base=2.0, factor=3.0, cap=100.0)
    assert backoff_delay(3, backoff, lambda: 0.0) == 9.0
    assert backoff_delay(3, backoff, lambda: 1.0) == 18.0
    assert backoff_delay(10, backoff, lambda: 1.0) == 100.0
    assert backoff_delay(10_000, backoff, lambda: 1.0) == 100.0, "no overflow on huge attempts"


def test_an_illegal_move_is_refused_and_changes_nothing(table: JobTable) -> None:
    job_id = queued(table)
    job = table.jobs[job_id]
    ops = Ops()
    with pytest.raises(IllegalTransition):
        table.move(job, JobState.SUCCEEDED, ops)
    assert job.status is JobState.QUEUED
    assert ops.updates == []
    assert table.counts["QUEUED"] == 1


def test_a_cancelled_running_jobs_key_slot_waits_for_its_stop(table: JobTable) -> None:
    ops = Ops()
    ids = []
    for _ in range(3):
        job = table.create(wire.JobSpec("t", concurrency_key="k", max_concurrent=1), ops)
        table.move(job, JobState.QUEUED, ops)
        table.lease(job.id, b"peer", "w", ops)
        ids.append(job.id)
    stopping, gone, plain = (table.jobs[i] for i in ids)
    table.keys_freed.clear()
    table.cancel(stopping, ops, stopping=True)
    table.cancel(gone, ops)  # no worker to tell: nothing to wait for
    assert table.keys_freed == [gone.id]
    assert table.stopping == {stopping.id: True}
    table.stopped([stopping.id, 999])
    assert table.keys_freed == [gone.id, stopping.id]
    assert table.stopping == {}
    table.stopped([stopping.id])
    assert table.keys_freed == [gone.id, stopping.id], "freed once"
    table.succeed(plain, wire.pack(1), ops)
    assert table.keys_freed[-1] == plain.id, "a result frees its slot at once, as before"
    unkeyed = table.create(wire.JobSpec("t"), ops)
    table.move(unkeyed, JobState.QUEUED, ops)
    table.lease(unkeyed.id, b"peer", "w", ops)
    table.cancel(unkeyed, ops, stopping=True)
    assert table.stopping == {unkeyed.id: False}, "kept for a no-overlap schedule"
    table.stopped([unkeyed.id])
    assert table.keys_freed[-1] == plain.id
