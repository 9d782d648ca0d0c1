"""Supervision: a crashed actor is restarted or the system stops with the cause, never silent."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from actors.errors import ActorCrashed
from actors.runtime import Actor, ActorSystem


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
