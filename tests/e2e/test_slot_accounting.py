"""A worker's slots are never lost: an assignment a paused worker drops unread-in-time,
then cancelled before reconciliation has noticed it, gives its slot back (its lease was
still counted when the worker freed the slot; the slot is granted when the lease ends)."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest

from tests.helpers.cluster import Cluster
from tests.helpers.waiting import until_running

pytestmark = pytest.mark.slow

# Heartbeats every 0.5 s: reconciliation needs two of them (about a second) to notice a
# dropped lease, time enough to cancel the job first, as the leak needed.
TIMINGS = ("--heartbeat-interval", "0.5", "--suspect-after", "1.0", "--lease", "2",
           "--lease-grace", "2")  # fmt: skip


def _logged(path: Path, text: str) -> bool:
    return text in path.read_text(errors="replace")


async def _until_logged(path: Path, text: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not _logged(path, text):
        assert time.monotonic() < deadline, f"{text!r} never logged in {path.name}"
        await asyncio.sleep(0.02)


async def test_a_dropped_assignment_cancelled_before_reconciliation_gives_its_slot_back(
    cluster: Cluster,
) -> None:
    cluster.start(*TIMINGS)
    worker = cluster.worker("single", 1)
    [log] = cluster.logs("single")
    async with cluster.client() as client:
        while not (await client.status()).workers:  # noqa: ASYNC110 - polls the scheduler
            await asyncio.sleep(0.05)
        os.kill(worker.pid, signal.SIGSTOP)
        first = await client.submit("record", ["first"], max_retries=0)
        await until_running(client, first)
        await asyncio.sleep(2.6)  # a pause past the lease: what this test is about
        os.kill(worker.pid, signal.SIGCONT)
        await _until_logged(log, "dropped 1 stale assignment")
        assert (await client.cancel([first]))[first] == "CANCELLED"
        second = await client.submit("record", ["second"], max_retries=0)
        assert await client.result(second, timeout=20) == "second"


async def test_a_slot_stuck_in_a_timed_out_thread_is_not_offered_after_a_restart(
    cluster: Cluster,
) -> None:
    """Thread pool, one slot: a timed-out handler stuck in one C call keeps its thread. The
    restarted scheduler must not count that slot free (the worker says it is busy), so a
    new job goes to a worker that can run it instead of waiting behind the stuck call."""
    cluster.start("--lease", "4", "--lease-grace", "1")
    cluster.worker("stuck", 1, "--pool", "thread")
    async with cluster.client() as client:
        # Stuck far longer than the test runs on a loaded machine (a restart and a worker
        # start can take seconds): the slot must not come back free while it matters.
        stuck = await client.submit("nap", [60.0], timeout=0.3, max_retries=0)
        assert (await client.wait([stuck], timeout=20))[stuck].status == "FAILED"
        cluster.restart_scheduler()
        while not (await client.status()).workers:  # noqa: ASYNC110 - polls the scheduler
            await asyncio.sleep(0.05)
        job = await client.submit("record", ["elsewhere"], max_retries=0)
        cluster.worker("free", 1, "--pool", "thread")
        assert await client.result(job, timeout=20) == "elsewhere"
        view = await client.job(job)
    assert view is not None
    assert view.worker == "free", "the stuck worker had no free slot to offer"
