"""Writes and reads told to the store actor at random moments: during commits, between a
chain's last take and the loop hearing of its end, between chains (writes told while a chain
runs join its queue directly: ``StoreActor.tell``). On every backend, every write commits
and is acknowledged exactly once, every read sees every write told before it, nothing
fails and nothing is left waiting. (From an adversarial review of that change.)"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

from actors.runtime import Actor, ActorSystem
from actors.scheduler.job import Job
from actors.scheduler.messages import Write, Written
from actors.scheduler.ops import Ops
from actors.scheduler.store.actor import StoreActor, read
from actors.scheduler.store.base import StoreBackend
from actors.scheduler.store.memory import MemoryStore
from actors.scheduler.store.postgres import PostgresStore
from actors.scheduler.store.sqlite import SqliteStore
from tests.store.records import Q, job

TELLS = 250


class Inbox(Actor):
    def __init__(self) -> None:
        super().__init__("inbox")


@pytest.fixture(params=["sqlite-full", "sqlite-normal", "postgres", "memory"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> StoreBackend:
    if request.param == "postgres":
        return PostgresStore(request.getfixturevalue("postgres_dsn"))
    if request.param == "memory":
        return MemoryStore()
    return SqliteStore(str(tmp_path / "c.db"), request.param.removeprefix("sqlite-"))


async def acknowledged(inbox: Actor, tags: set[int]) -> list[int]:
    """Every tag the store acknowledges until all of ``tags`` are (repeats included)."""
    seen: list[int] = []
    while not tags <= set(seen):
        reply = await asyncio.wait_for(inbox.mailbox.get(), 10)
        assert isinstance(reply, Written)
        seen += reply.tags
    return seen


@pytest.mark.parametrize("seed", range(2))
async def test_writes_and_reads_told_at_any_moment_commit_once_and_in_order(
    backend: StoreBackend, seed: int
) -> None:
    rnd = random.Random(seed)
    store = StoreActor(backend)
    await store.open()
    system = ActorSystem()
    system.add(store)
    inbox = Inbox()
    await system.start()
    told: list[int] = []  # job ids, in the order their writes were told
    tags: set[int] = set()
    reads: list[tuple[asyncio.Future[list[Job]], set[int]]] = []
    joined = 0  # writes told while a chain ran
    try:
        for tag in range(1, TELLS + 1):
            if rnd.random() < 0.75:
                ids = list(range(len(told) + 1, len(told) + 1 + rnd.choice([1, 1, 1, 5, 50])))
                joined += store._chain is not None
                store.tell(Write(Ops(inserts=[job(i, Q) for i in ids]).seal(), inbox, tag))
                told += ids
                tags.add(tag)
            else:
                wanted = list(told) or [0]
                reads.append(
                    (asyncio.ensure_future(read(store, StoreBackend.jobs, wanted)), set(told))
                )
            for _ in range(rnd.choice([0, 0, 1, 2, 5, 20])):
                await asyncio.sleep(0)
        seen = await acknowledged(inbox, tags)
        for reading, before in reads:
            found = {j.id for j in await asyncio.wait_for(reading, 10)}
            assert before <= found, f"a read missed {len(before - found)} job(s) told before it"
        stored = {j.id for j in await read(store, StoreBackend.jobs, told)}
        assert stored == set(told)
        assert inbox.mailbox.empty()
        assert sorted(seen) == sorted(tags), "each write acknowledged exactly once"
        assert store.failed is None
        if isinstance(backend, SqliteStore) and backend.inline_ops < 0:
            assert joined, "no write was told while a chain ran: the case is not exercised"
    finally:
        await system.stop()
