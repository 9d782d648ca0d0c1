"""A stand-in actor that records what it is told, for unit tests of one actor's output."""

from __future__ import annotations

from typing import Any

from actors.runtime import Actor


class Recorder(Actor):
    """Appends (its name, message) to a log shared by all recorders of a test, in order."""

    def __init__(self, name: str, log: list[tuple[str, Any]]) -> None:
        super().__init__(name)
        self.log = log

    def tell(self, message: Any) -> None:
        self.log.append((self.name, message))
