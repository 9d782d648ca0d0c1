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
from actors.scheduler import events as hub_module
from actors.scheduler.brain import Brain
from actors.scheduler.events import EventHub
from actors.scheduler.gateway import STRIKES, Gateway
from actors.scheduler.messages import Send, SubscriptionRequest
from actors.scheduler.store.memory import MemoryStore
from tests.helpers.recorder import Recorder
from transport import protocol as wire

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
        spec = job_spec("t", queue="nobody")
        with pytest.raises(RequestRefused, match="rate") as refused:  # the frame, as sent
            await client._request(lambda rid: wire.Submit(rid, [spec]))
        assert 3.0 < refused.value.retry_after <= 5.0, "the debt, in seconds"


async def test_the_sdk_waits_out_its_rate_instead_of_failing_a_large_submission() -> None:
    """1,000,000 jobs from one client on a default scheduler (100,000 a second) failed
    with a quota error once the client outran the rate; the SDK now waits as told."""
    brain = Brain(config(max_submit_rate=200.0), MemoryStore())
    async with brain, AsyncClient(brain.address) as client:
        specs = [job_spec("t", [i], queue="nobody") for i in range(500)]
        ids = [i async for chunk in client.submit_chunks(specs, chunk=100) for i in chunk]
        assert len(set(ids)) == 500
        assert brain.scheduler.quotas.refused["rate"] >= 1, "it was paced, not let through"
        assert brain.table.counts["QUEUED"] == 500


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


def hub() -> tuple[EventHub, list[tuple[str, Any]]]:
    log: list[tuple[str, Any]] = []
    events = EventHub()
    events.gateway = Recorder("gateway", log)
    events.scheduler = Recorder("scheduler", log)
    events.subject = lambda peer: peer.split(b"|")[0]
    return events, log


def subscribe(peer: bytes, rid: int) -> SubscriptionRequest:
    return SubscriptionRequest(peer, wire.Subscribe(rid, None))


async def test_a_subscription_made_again_at_a_full_hub_evicts_nobody(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(hub_module, "MAX_SUBSCRIBERS", 3)
    events, _log = hub()
    for peer, rid in ((b"bob|c", 1), (b"bob|c", 2), (b"mallory|c", 1)):
        await events.handle(subscribe(peer, rid))
    for _ in range(3):
        await events.handle(subscribe(b"mallory|c", 1))  # the same one, again
    assert list(events.subscriptions) == [(b"bob|c", 1), (b"bob|c", 2), (b"mallory|c", 1)]


async def test_an_evicted_subscriber_is_told(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hub_module, "MAX_SUBSCRIBERS", 2)
    events, log = hub()
    await events.handle(subscribe(b"bob|c", 1))
    await events.handle(subscribe(b"bob|c", 2))
    await events.handle(subscribe(b"carol|c", 7))
    told = [m for name, m in log if name == "gateway" and isinstance(m, Send)]
    assert [(s.peer, s.message.code, s.message.request_id) for s in told] == [
        (b"bob|c", "evicted", 1)
    ]
    assert "quota" not in told[0].message.code, "no strike for what another did"


async def test_a_watch_refused_over_its_quota_raises_instead_of_waiting_forever() -> None:
    brain = Brain(config(max_subscriptions=1), MemoryStore())
    async with brain, AsyncClient(brain.address) as client:
        subscribed = asyncio.Event()
        first = client.watch(subscribed=subscribed)
        second = client.watch()
        reading = asyncio.create_task(anext(first))
        await subscribed.wait()
        await client.submit("t", queue="nobody")  # an event for the first
        assert (await asyncio.wait_for(reading, 10)).kind == "job"
        with pytest.raises(RequestRefused, match="quota"):
            await asyncio.wait_for(anext(second), 10)
        await first.aclose()


async def test_workflows_sent_at_once_cannot_all_pass_the_jobs_limit() -> None:
    """A workflow's steps are created only once the DAG resolver has answered; until then
    they are held against the allowance, or twenty 10-step workflows sent together all
    pass a limit of 10 (found by the review of the quotas: 200 jobs held)."""
    brain = Brain(config(max_jobs_in_flight=10), MemoryStore())
    async with brain, AsyncClient(brain.address) as client:
        steps = {f"s{i}": (job_spec("t", queue="nobody"), []) for i in range(10)}
        sent = [client.submit_workflow(steps) for _ in range(20)]
        results = await asyncio.gather(*sent, return_exceptions=True)
        accepted = [r for r in results if not isinstance(r, BaseException)]
        refused = [r for r in results if isinstance(r, RequestRefused)]
        assert len(accepted) == 1
        assert len(refused) == 19
        assert all(r.code == "quota" for r in refused)
        assert brain.table.held.of("")[0] == 10, "no reservation left behind"
        cyclic = {"a": (job_spec("t", queue="nobody"), ["b"]), "b": (job_spec("t"), ["a"])}
        await client.cancel(list(accepted[0][1].values()))
        with pytest.raises(RequestRefused):
            await client.submit_workflow(cyclic)
    assert brain.table.held.of("")[0] == 0, "a rejected shape gives its reservation back"
