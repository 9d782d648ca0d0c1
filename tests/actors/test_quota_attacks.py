"""Attacks on the allowances (issue 16) that must fail: a client retrying its own
submission is not refused for jobs it already holds, a refusal over an allowance all
peers share strikes nobody, a subscription made again evicts nobody else, and a watch
refused or evicted says so instead of hanging. In-process actors, memory transport."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest

from actors.client import AsyncClient, job_spec
from actors.config import SchedulerConfig
from actors.errors import RequestRefused
from actors.scheduler.brain import Brain
from actors.scheduler.gateway import STRIKES, Gateway
from actors.scheduler.store.memory import MemoryStore

_n = itertools.count()


def config(**limits: Any) -> SchedulerConfig:
    return SchedulerConfig(bind=f"mem://quota-attacks-{next(_n)}", db="unused.db", **limits)


async def test_a_submission_repeated_with_its_keys_at_the_limit_is_answered_not_refused() -> None:
    """A client that did not hear its Submitted (a reconnect) submits the same keyed jobs
    again, as the client's own error message advises: they exist, nothing new is created,
    so the jobs in flight it already holds must not refuse it."""
    brain = Brain(config(max_jobs_in_flight=2), MemoryStore())
    async with brain, AsyncClient(brain.address) as client:
        specs = [job_spec("t", [i], queue="nobody", idempotency_key=f"k{i}") for i in (1, 2)]
        first = await client.submit_many(specs)
        assert await client.submit_many(specs) == first
        assert await client.submit_many(specs[:1]) == first[:1]
        with pytest.raises(RequestRefused, match="quota"):
            await client.submit_many([job_spec("t", [3], queue="nobody")])
        with pytest.raises(RequestRefused, match="quota"):  # one old key, one new job
            await client.submit_many([specs[0], job_spec("t", [3], queue="nobody")])
        assert brain.table.held.of("")[0] == 2


async def test_a_submission_repeated_in_rate_debt_is_answered() -> None:
    brain = Brain(config(max_submit_rate=1.0), MemoryStore())
    async with brain, AsyncClient(brain.address) as client:
        specs = [job_spec("t", [i], queue="nobody", idempotency_key=f"r{i}") for i in range(5)]
        first = await client.submit_many(specs)  # a full bucket, then 4 s in debt
        assert await client.submit_many(specs) == first
        with pytest.raises(RequestRefused, match="rate"):
            await client.submit("t", queue="nobody")


async def test_without_keys_a_peer_refused_over_the_shared_allowance_is_not_banned() -> None:
    """Without keys all peers share the jobs in flight (a peer cannot be told apart): one
    that fills them gets every other refused, which must not get those others banned
    (their waits and status unanswered for BAN_SECONDS) for what they did not do."""
    brain = Brain(config(max_jobs_in_flight=1), MemoryStore())
    async with brain, AsyncClient(brain.address) as hog, AsyncClient(brain.address) as victim:
        mine = await hog.submit("t", queue="nobody")
        for _ in range(STRIKES + 5):
            with pytest.raises(RequestRefused, match="quota"):
                await victim.submit("t", queue="nobody")
        gateway = brain.scheduler.gateway
        assert isinstance(gateway, Gateway)
        assert not gateway.banned
        assert (await asyncio.wait_for(victim.job(mine), 10)) is not None, "still heard"
