"""A listing by a status that does not exist is refused with a reply naming the states; it
must not reach the scheduler's state machine as an error (which stopped the scheduler)."""

from __future__ import annotations

import itertools

import pytest

from actors.client import AsyncClient
from actors.config import SchedulerConfig
from actors.errors import RequestRefused
from actors.scheduler.brain import Brain
from actors.scheduler.store.memory import MemoryStore

_n = itertools.count()


@pytest.mark.parametrize("status", ["failed", "DONE"])
async def test_an_unknown_status_is_refused_and_the_scheduler_goes_on(status: str) -> None:
    config = SchedulerConfig(bind=f"mem://listing-{next(_n)}", db="unused.db")
    async with Brain(config, MemoryStore()) as brain, AsyncClient(brain.address) as client:
        with pytest.raises(RequestRefused, match="UPSTREAM_FAILED") as refused:
            await client.jobs(status=status)
        assert refused.value.code == "invalid"
        assert repr(status) in str(refused.value)
        assert await client.jobs(status="FAILED") == []
        assert (await client.status()).jobs["FAILED"] == 0, "still serving"
