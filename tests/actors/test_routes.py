"""Every reference an actor of the scheduler process declares for a route (``self.x:
Actor`` in its ``__init__``, set later) is set once the brain has wired them: a missing one
would only show as a crash at the first message sent along that route."""

from __future__ import annotations

import ast
import inspect
import itertools
import textwrap

from actors.config import SchedulerConfig
from actors.runtime import Actor
from actors.scheduler.brain import Brain
from actors.scheduler.store.memory import MemoryStore

_n = itertools.count()


def declared_routes(actor: Actor) -> list[str]:
    """Attributes annotated ``Actor`` (or an actor class) without a value, in the
    ``__init__`` of the actor's class and its bases."""
    names: list[str] = []
    for cls in type(actor).__mro__:
        init = cls.__dict__.get("__init__")
        if init is None or cls in (Actor, object):
            continue
        tree = ast.parse(textwrap.dedent(inspect.getsource(init)))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.AnnAssign)
                and node.value is None
                and isinstance(node.target, ast.Attribute)
                and isinstance(node.target.value, ast.Name)
                and node.target.value.id == "self"
            ):
                names.append(node.target.attr)
    return names


async def test_every_declared_route_is_wired() -> None:
    config = SchedulerConfig(bind=f"mem://routes-{next(_n)}", db="unused.db")
    async with Brain(config, MemoryStore()) as brain:
        actors = brain.system.actors
        assert len(actors) == 8
        unset = [
            f"{type(actor).__name__}.{name}"
            for actor in actors
            for name in declared_routes(actor)
            if not isinstance(getattr(actor, name, None), Actor)
        ]
        declared = sum(len(declared_routes(actor)) for actor in actors)
    assert declared >= 15, "the check found the routes it is about"
    assert unset == []
