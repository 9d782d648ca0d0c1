"""Supervision: a crashed actor is restarted or the system stops with the cause, never silent."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from typing import Any

import pytest

from actors import runtime
from actors.errors import ActorCrashed
from actors.runtime import YOUNG_GC_THRESHOLD, Actor, ActorSystem, settle_gc


class Fragile(Actor):
    def __init__(self, restartable: bool) -> None:
        super().__init__("fragile")
        self.restartable = restartable
        self.starts = 0
        self.handled: list[Any] = []

    async def on_start(self) -> None:
        self.starts += 1

    async def handle(self, message: Any) -> None:
        if message == "boom":
            raise RuntimeError("boom")
        self.handled.append(message)


async def test_a_crashing_actor_that_may_not_restart_stops_the_system_with_its_cause() -> None:
    system = ActorSystem()
    actor = system.add(Fragile(restartable=False))
    await system.start()
    actor.tell("boom")
    with pytest.raises(ActorCrashed, match="fragile crashed: RuntimeError"):
        await asyncio.wait_for(system.run(), 5)


async def test_a_restartable_actor_is_restarted_and_keeps_serving() -> None:
    system = ActorSystem()
    actor = system.add(Fragile(restartable=True))
    await system.start()
    actor.tell("boom")
    actor.tell("after")
    for _ in range(100):
        if actor.handled:
            break
        await asyncio.sleep(0.01)
    assert actor.handled == ["after"]
    assert actor.starts == 2
    await system.stop()


async def test_an_actor_crashing_too_often_escalates() -> None:
    system = ActorSystem()
    actor = system.add(Fragile(restartable=True))
    await system.start()
    for _ in range(5):
        actor.tell("boom")
    with pytest.raises(ActorCrashed):
        await asyncio.wait_for(system.run(), 5)


@pytest.fixture
def gc_state() -> Iterator[None]:
    """This process's GC thresholds and frozen objects as they were, after the test."""
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def test_settling_the_gc_raises_the_young_threshold_and_freezes_what_exists(
    gc_state: None,
) -> None:
    gc.set_threshold(*runtime._THRESHOLDS_AT_IMPORT)
    kept = [object() for _ in range(3)]
    before = gc.get_freeze_count()
    settle_gc()
    assert gc.get_threshold() == (YOUNG_GC_THRESHOLD, *runtime._THRESHOLDS_AT_IMPORT[1:])
    assert gc.get_freeze_count() > before
    assert kept


def test_settling_the_gc_keeps_thresholds_someone_else_chose(gc_state: None) -> None:
    gc.set_threshold(1234, 5, 6)
    settle_gc()
    assert gc.get_threshold() == (1234, 5, 6)


async def test_a_scheduler_settles_its_gc_once_started(gc_state: None) -> None:
    """``corral scheduler`` (serve_brain) raises the young threshold after its start-up."""
    from actors.cli.servers import serve_brain
    from actors.config import SchedulerConfig
    from actors.scheduler.brain import Brain
    from actors.scheduler.store.memory import MemoryStore

    gc.set_threshold(*runtime._THRESHOLDS_AT_IMPORT)
    brain = Brain(SchedulerConfig(bind="mem://settle-gc", db="unused.db"), MemoryStore())
    stop_at_once = asyncio.Event()
    stop_at_once.set()
    await serve_brain(brain, stop_at_once)
    assert gc.get_threshold()[0] == YOUNG_GC_THRESHOLD


async def test_a_standby_that_takes_a_term_settles_its_gc_once_leading(
    gc_state: None, postgres_dsn: str
) -> None:
    """A scheduler on PostgreSQL (``Node``) settles the GC each time it starts leading, after
    its brain's start-up, as ``corral scheduler`` does on SQLite."""
    from actors.config import SchedulerConfig
    from actors.scheduler.node import Node

    gc.set_threshold(*runtime._THRESHOLDS_AT_IMPORT)
    leading = asyncio.Event()
    thresholds_when_leading: list[int] = []

    def say(line: str) -> None:
        if not leading.is_set() and "; leader, term 1;" in line:  # brain.summary()
            thresholds_when_leading.append(gc.get_threshold()[0])
            leading.set()

    node = Node(SchedulerConfig(bind="mem://settle-gc-node", db=postgres_dsn), say)
    running = asyncio.create_task(node.run())
    try:
        await asyncio.wait_for(leading.wait(), 30)
    finally:
        node.stop()
        await asyncio.wait_for(running, 30)
    assert thresholds_when_leading == [YOUNG_GC_THRESHOLD]
