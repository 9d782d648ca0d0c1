"""Chaos on real processes, checked from a ledger the task keeps outside corral (see
bench/chaos.py): workers SIGKILLed and replaced, workers paused past their lease
(SIGSTOP, then SIGCONT: zombies), and the scheduler SIGKILLed and restarted within the lease,
all during one run."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bench.chaos import CHAOS_TIMINGS, ChaosReport, Faults, Pause, check, run_chaos
from bench.harness import Cluster
from transport import protocol as wire

pytestmark = pytest.mark.slow


@pytest.mark.timeout(240)
def test_kills_pauses_and_restarts_never_double_commit_overlap_or_start_stale(
    tmp_path: Path,
) -> None:
    cluster = Cluster(CHAOS_TIMINGS, directory=tmp_path)
    faults = Faults(kill_every=2.0, pause_every=2.5, pause_seconds=3.0, restart_every=4.0)
    try:
        cluster.start_scheduler()
        report = asyncio.run(
            run_chaos(
                cluster,
                jobs=300,
                workers=4,
                concurrency=4,
                faults=faults,
                job_seconds=0.005,
                long_seconds=3.0,
                long_every=30,
            )
        )
    finally:
        cluster.stop()
    print("\n".join(report.lines()))
    assert report.kills >= 3, "the run must actually be chaotic"
    assert report.pauses >= 3
    assert report.restarts >= 2
    assert report.not_succeeded == []
    assert report.succeeded == 300
    assert report.wrong_token == []
    assert report.overlaps == []
    assert report.stale_starts == []
    assert report.late_finishes == []


def _outcome(job: int, token: int) -> dict[int, wire.JobOutcome]:
    return {job: wire.JobOutcome(job, "SUCCEEDED", wire.pack(token))}


def test_the_checker_finds_a_stale_start_a_late_finish_and_an_overlap() -> None:
    """The checks can fail: a paused worker (pid 10) resumes at t=5 and runs its job on to
    t=6 after token 2 ran at t=3..4 on pid 20, then starts it again under token 1 at t=6.2."""
    events = [
        ("start", 1, 1, 0.0, 10, 1),
        ("tick", 1, 1, 5.5, 10, 1),
        ("end", 1, 1, 6.0, 10, 1),
        ("start", 1, 2, 3.0, 20, 1),
        ("end", 1, 2, 4.0, 20, 1),
        ("start", 1, 1, 6.2, 11, 10),  # a stale start in a child of the paused worker
        ("end", 1, 1, 6.3, 11, 10),
    ]
    report = ChaosReport(1)
    check(report, _outcome(1, 2), events, {}, [Pause(10, 1.0, 5.0)], lease=2.0)
    assert report.stale_starts == [1]
    assert report.late_finishes == [1]
    assert report.overlaps == []  # pid 10 was stopped while token 2 ran; 11 ran after it
    assert report.wrong_token == []


def test_the_checker_passes_a_paused_worker_that_fenced_itself_at_once() -> None:
    events = [
        ("start", 1, 1, 0.0, 10, 1),
        ("exit", 1, 1, 5.02, 10, 1),  # stopped 20 ms after it resumed
        ("start", 1, 2, 3.0, 20, 1),
        ("end", 1, 2, 4.0, 20, 1),
    ]
    report = ChaosReport(1)
    check(report, _outcome(1, 2), events, {}, [Pause(10, 1.0, 5.0)], lease=2.0)
    assert (report.stale_starts, report.late_finishes, report.overlaps) == ([], [], [])
    assert report.succeeded == 1


def test_the_checker_counts_a_child_running_on_during_its_agents_pause_as_overlap() -> None:
    events = [
        ("start", 1, 1, 0.0, 11, 10),  # the child of paused agent 10 is not paused itself
        ("end", 1, 1, 3.5, 11, 10),
        ("start", 1, 2, 3.0, 20, 1),
        ("end", 1, 2, 4.0, 20, 1),
    ]
    report = ChaosReport(1)
    check(report, _outcome(1, 2), events, {}, [Pause(10, 1.0, 5.0)], lease=2.0)
    assert report.overlaps == [1]
