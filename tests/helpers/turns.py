"""Counting the turns another task gets on the event loop, to tell work done in slices
(other tasks run in between: the count moves) from work done in one go (it does not)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


class Turns:
    """``async with Turns() as turns``: ``turns.count`` grows each time the loop lets
    another task run."""

    def __init__(self) -> None:
        self.count = 0
        self._task: asyncio.Future[None] | None = None

    async def __aenter__(self) -> Turns:
        self._task = asyncio.ensure_future(self._spin())
        await asyncio.sleep(0)  # it has started
        return self

    async def __aexit__(self, *exc: Any) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _spin(self) -> None:
        while True:
            self.count += 1
            await asyncio.sleep(0)
