"""Scheduling strategies, by name. Adding one is adding a module and a line here."""

from __future__ import annotations

from strategies.base import Strategy, WorkerSlots
from strategies.fifo import FifoStrategy
from strategies.priority import PriorityStrategy

STRATEGIES: dict[str, type[Strategy]] = {
    FifoStrategy.name: FifoStrategy,
    PriorityStrategy.name: PriorityStrategy,
}


class UnknownStrategy(ValueError):
    """Raised when a strategy name is not registered."""

    def __init__(self, name: str) -> None:
        super().__init__(
            f"unknown strategy {name!r}; choose one of: {', '.join(sorted(STRATEGIES))}"
        )
        self.name = name


def create(name: str) -> Strategy:
    """A new, empty strategy by its registered name."""
    try:
        return STRATEGIES[name]()
    except KeyError:
        raise UnknownStrategy(name) from None


__all__ = ["STRATEGIES", "Strategy", "UnknownStrategy", "WorkerSlots", "create"]
