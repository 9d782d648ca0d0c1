"""Concurrency keys and rate limits in the strategy (``strategies.gates``), on a fake clock:
a key's running jobs never exceed its cap, a held job blocks nobody behind it, released
jobs come back in their key's order, a bucket gives out no more than its rate and burst, and
the state a restart reads back resumes it."""

from __future__ import annotations

import pytest

from actors.scheduler.messages import ReadyJob
from strategies import create
from strategies.base import Strategy
from strategies.gates import Bucket


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def job(job_id: int, key: str = "", cap: int = 0, task: str = "t", priority: int = 0) -> ReadyJob:
    return ReadyJob(job_id, priority, "default", job_id, 0.0, False, task, key, cap)


def strategy(name: str = "fifo") -> tuple[Strategy, Clock]:
    s = create(name)
    clock = Clock()
    s.gates.clock = clock
    s.credit(b"w", "w", ("default",), frozenset(), 100, 100)
    return s, clock


@pytest.mark.parametrize("name", ["fifo", "priority", "round-robin", "least-loaded"])
def test_a_key_runs_at_most_its_cap_and_blocks_no_other_job(name: str) -> None:
    s, _ = strategy(name)
    for i in range(1, 7):
        s.push(job(i, "acme", 2))
    s.push(job(7))
    s.push(job(8, "globex", 5))
    picked = [job_id for job_id, _ in s.match()]
    assert sorted(picked) == [1, 2, 7, 8]
    assert s.gates.held == 4
    s.release(s.gates.freed([1]))
    assert [job_id for job_id, _ in s.match()] == [3], "the next of the key, in its order"
    s.release(s.gates.freed([7, 8]))  # not acme's: nothing of acme is released
    assert s.match() == []


def test_the_latest_submission_sets_the_keys_cap() -> None:
    s, _ = strategy()
    s.push(job(1, "k", 1))
    s.push(job(2, "k", 3))
    s.push(job(3, "k", 3))
    assert len(s.match()) == 3


def test_a_lost_pick_frees_its_keys_slot() -> None:
    s, _ = strategy()
    s.push(job(1, "k", 1))
    s.push(job(2, "k", 1))
    assert [j for j, _ in s.match()] == [1]
    s.release(s.gates.freed([1]))  # e.g. its compare-and-swap failed: ReturnCredit's ids
    assert [j for j, _ in s.match()] == [2]


def test_running_jobs_a_restart_reports_hold_their_slots() -> None:
    s, _ = strategy()
    s.gates.running([(1, "k", 2, 1), (2, "k", 2, 2)])
    s.push(job(3, "k", 2))
    assert s.match() == []
    s.release(s.gates.freed([2]))
    assert [j for j, _ in s.match()] == [3]


def test_a_rate_limit_gives_its_burst_then_one_per_interval() -> None:
    s, clock = strategy()
    s.gates.set_limit("t", 10, 1.0, 3)
    for i in range(1, 11):
        s.push(job(i))
    assert [j for j, _ in s.match()] == [1, 2, 3]
    assert s.gates.next_due() == pytest.approx(0.1)
    clock.now += 0.1
    s.release(s.gates.due())
    assert [j for j, _ in s.match()] == [4]
    clock.now += 0.25
    s.release(s.gates.due())
    assert [j for j, _ in s.match()] == [5, 6]
    states = s.gates.take_changed()
    assert [name for name, _ in states] == ["t"]
    restarted, clock2 = strategy()
    clock2.now = clock.now
    restarted.gates.set_limit("t", 10, 1.0, 3, states[0][1])
    restarted.push(job(7))
    assert restarted.match() == [], "no free burst after a restart"


def test_a_declared_limit_applies_unless_an_admins_is_in_force() -> None:
    s, clock = strategy()
    gates = s.gates
    assert gates.declare("t", 10, 1.0, 2), "no limit yet: the task's own applies"
    assert not gates.declare("t", 10, 1.0, 2), "the same again: nothing to keep"
    for i in range(1, 5):
        s.push(job(i))
    assert [j for j, _ in s.match()] == [1, 2]

    def bucket() -> Bucket:
        found = gates.rated["t"].bucket
        assert found is not None
        return found

    tat = bucket().tat
    assert gates.declare("t", 20, 1.0, 2), "a changed declaration replaces the old one"
    assert (bucket().count, bucket().tat) == (20, tat), "its bucket's state kept"
    gates.set_limit("t", 1, 60.0, 1)  # an admin's
    assert not gates.declare("t", 50, 1.0, 50), "an admin's limit is never replaced"
    assert bucket().count == 1
    assert not gates.rated["t"].declared
    clock.now += 0.5
    s.release(gates.due())
    assert [j for j, _ in s.match()] == [3], "its one token"
    clock.now += 1.0
    s.release(gates.due())
    assert s.match() == [], "then the admin's 1/m holds"
    s.release(gates.remove_limit("t"))
    assert gates.declare("t", 10, 1.0, 2), "removed: the next declaration applies again"


def test_removing_a_limit_releases_its_jobs() -> None:
    s, _ = strategy()
    s.gates.set_limit("t", 1, 3600.0, 1)
    s.push(job(1))
    s.push(job(2))
    assert [j for j, _ in s.match()] == [1]
    s.release(s.gates.remove_limit("t"))
    assert [j for j, _ in s.match()] == [2]
    assert s.gates.gates == {}


def test_a_bucket_never_gives_more_than_rate_times_time_plus_burst() -> None:
    bucket = Bucket(100, 1.0, 10)
    taken = 0
    now = 0.0
    while now < 30.0:
        while bucket.take(now):
            taken += 1
        now += 0.0037
    assert 100 * 30 <= taken <= 100 * 30 + 10


@pytest.mark.parametrize("burst", [1, 5])
def test_a_bucket_at_unix_time_magnitudes_gives_its_token_when_due(burst: int) -> None:
    """Found by the --rate-limit bench: with burst 1 at 20/s, every held job waited forever
    and the strategy's timer spun at 0 s, because ``now + interval - tat`` lost the bits of
    a 50 ms interval at Unix times near 1.8e9 and read a due token as none (the tests' fake
    clock started at 1000, where it did not)."""
    s, clock = strategy("priority")
    clock.now = 1_796_100_876.4107947
    s.gates.set_limit("t", 20, 1.0, burst)
    for i in range(1, 31):
        s.push(job(i))
    started = [job_id for job_id, _ in s.match()]
    for _ in range(100):
        wait = s.gates.next_due()
        if wait is None:
            break
        clock.now += wait
        s.release(s.gates.due())
        started += [job_id for job_id, _ in s.match()]
    assert sorted(started) == list(range(1, 31))
    assert clock.now - 1_796_100_876.4107947 == pytest.approx((30 - burst) / 20, abs=0.01)
