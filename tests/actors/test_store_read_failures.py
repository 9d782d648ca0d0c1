"""A read the store cannot answer (a PostgreSQL session gone, a disk error) stops the
scheduler the way a failed commit does: with the store's one error, not an actor crash
with a traceback, and nothing hangs."""

from __future__ import annotations

import asyncio
import itertools
import logging
from typing import Any

import pytest

from actors.client import AsyncClient
from actors.config import SchedulerConfig
from actors.errors import StoreLost
from actors.lifecycle import JobState
from actors.scheduler.brain import Brain
from actors.scheduler.job import Job
from actors.scheduler.store.memory import MemoryStore

_n = itertools.count()


class LosesItsSession(MemoryStore):
    """Answers every read but a listing, which finds the connection gone."""

    async def list_jobs(
        self,
        *,
        status: JobState | None = None,
        queue: str | None = None,
        before: int | None = None,
        limit: int = 100,
        owner: str | None = None,
        **filters: Any,
    ) -> list[Job]:
        raise StoreLost(self.where, "the database session ended while reading")


async def test_a_failed_read_stops_the_scheduler_with_the_stores_own_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = SchedulerConfig(bind=f"mem://read-failure-{next(_n)}", db="unused.db")
    brain = Brain(config, LosesItsSession())
    await brain.start()
    try:
        async with AsyncClient(brain.address, request_timeout=30) as client:
            listing = asyncio.create_task(client.jobs())
            with pytest.raises(StoreLost, match="session ended while reading"):
                await asyncio.wait_for(brain.run(), 10)
            listing.cancel()  # its reply never comes: the scheduler stopped
            await asyncio.gather(listing, return_exceptions=True)
    finally:
        await brain.close()
    crashes = [r for r in caplog.records if "crashed" in r.getMessage()]
    assert crashes == [], "a storage failure is one line, not an actor crash with a traceback"
    assert not any(r.exc_info for r in caplog.records if r.levelno >= logging.ERROR)
