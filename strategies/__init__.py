"""Scheduling strategies, by name. Adding one is adding a module and a line here."""

from __future__ import annotations

from typing import Any

from actors.errors import UnknownStrategy
from strategies.base import Strategy
from strategies.fifo import FifoStrategy
from strategies.index import Worker
from strategies.least_loaded import LeastLoadedStrategy
from strategies.priority import PriorityStrategy
from strategies.round_robin import RoundRobinStrategy

STRATEGIES: dict[str, type[Strategy]] = {
    cls.name: cls
    for cls in (FifoStrategy, PriorityStrategy, RoundRobinStrategy, LeastLoadedStrategy)
}


def create(name: str, weights: dict[str, float] | None = None, **options: Any) -> Strategy:
    """A new, empty strategy by its registered name. ``options`` the strategy does not take
    (e.g. ``aging`` for FIFO) are ignored."""
    try:
        cls = STRATEGIES[name]
    except KeyError:
        raise UnknownStrategy(name, STRATEGIES) from None
    if cls is PriorityStrategy:
        return PriorityStrategy(weights, **options)
    return cls(weights)


__all__ = ["STRATEGIES", "Strategy", "UnknownStrategy", "Worker", "create"]
