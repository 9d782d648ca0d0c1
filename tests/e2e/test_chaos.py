"""Chaos on real processes: 3,000 jobs while a random worker is SIGKILLed every half second
and replaced. Checked from a ledger the task keeps outside corral (see bench/chaos.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bench.chaos import run_chaos
from bench.harness import FAST_TIMINGS, Cluster

pytestmark = pytest.mark.slow


@pytest.mark.timeout(240)
def test_random_worker_kills_never_double_commit_or_overlap(tmp_path: Path) -> None:
    cluster = Cluster(FAST_TIMINGS, directory=tmp_path)
    try:
        cluster.start_scheduler()
        report = asyncio.run(
            run_chaos(
                cluster, jobs=3000, workers=3, concurrency=4, kill_every=0.5, job_seconds=0.005
            )
        )
    finally:
        cluster.stop()
    print("\n".join(report.lines()))
    assert report.kills >= 3, "the run must actually be chaotic"
    assert report.not_succeeded == []
    assert report.succeeded == 3000
    assert report.wrong_token == []
    assert report.overlaps == []
