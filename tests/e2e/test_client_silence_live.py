"""A client waiting on a live scheduler that has nothing to say (the job has no worker yet)
never calls it unreachable, however short its silence timeout."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import pytest

from actors.client import AsyncClient
from tests.helpers.procs import Procs, free_address

pytestmark = pytest.mark.slow


async def test_a_long_wait_on_a_live_scheduler_is_not_reported_as_silence(
    procs: Procs, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    address = free_address()
    procs.scheduler(address, tmp_path / "corral.db")
    caplog.set_level(logging.WARNING, logger="corral.client")
    async with AsyncClient(address, connect_timeout=10, silence_timeout=1.0) as client:
        job = await client.submit("record", ["nobody runs me"], max_retries=0)
        waiting = asyncio.ensure_future(client.wait([job], timeout=60))
        # Three silence timeouts of waiting with nothing to report (no worker exists).
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            assert not waiting.done()
            await asyncio.sleep(0.1)
        waiting.cancel()
    assert "unreachable" not in caplog.text
