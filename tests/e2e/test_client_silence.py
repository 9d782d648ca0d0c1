"""A client waiting on a scheduler that dies says so (once) instead of waiting in silence,
goes on waiting (a wait outlives a restart), and says so again when the scheduler is back."""

from __future__ import annotations

import asyncio
import logging

import pytest

from tests.helpers.cluster import Cluster

pytestmark = pytest.mark.slow


async def test_a_wait_on_a_dead_scheduler_says_it_is_unreachable_then_goes_on(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    cluster.start()
    caplog.set_level(logging.WARNING, logger="corral.client")
    async with cluster.client(silence_timeout=1.0) as client:
        job = await client.submit("record", ["late"], max_retries=0)  # no worker yet
        waiting = asyncio.ensure_future(client.wait([job], timeout=60))
        cluster.stop_scheduler()
        while "unreachable" not in caplog.text:
            assert not waiting.done(), "the wait goes on while the scheduler is away"
            await asyncio.sleep(0.05)
        cluster.start_scheduler()
        cluster.worker("w", 1)
        outcome = (await waiting)[job]
    assert outcome.status == "SUCCEEDED"
    assert caplog.text.count("unreachable") == 1
    assert "answers again" in caplog.text
