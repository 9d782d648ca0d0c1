"""An async handler that takes no step past its job's lease (``LeaseBound``).

An async handler runs as a task on the worker's own event loop, whatever the pool. When
the worker process is paused past its jobs' leases (SIGSTOP, a frozen container) and
resumed, the loop wakes with the handlers' timers due and their tasks ready: without a
check, each would take its next step (and often finish) before the worker's fence loop
ran, while the scheduler had already given the job to another worker. ``LeaseBound``
wraps the handler's coroutine and, before each step, compares the clock with the lease's
expiry: past it, the handler gets ``CancelledError`` at the ``await`` it was suspended in
instead of the value it waited for, as a stop would give it; the worker then reports the
job self-fenced. As with a stop, code in the handler's ``except CancelledError`` or
``finally`` still runs (README, "Limits").

A task takes any object that is a ``collections.abc.Coroutine``; this one forwards
``send``, ``throw`` and ``close`` to the handler's coroutine.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Generator
from types import TracebackType
from typing import Any

_monotonic = time.monotonic


class LeaseBound(Coroutine[Any, Any, Any]):
    """``coro``, refused its next step once ``time.monotonic()`` is past ``deadline()``."""

    __slots__ = ("_coro", "_deadline", "_fenced")

    def __init__(self, coro: Coroutine[Any, Any, Any], deadline: Callable[[], float]) -> None:
        self._coro = coro
        self._deadline = deadline
        self._fenced = False

    def send(self, value: Any) -> Any:
        if not self._fenced and _monotonic() > self._deadline():
            self._fenced = True  # once, as a stop: its cleanup may await on
            return self._coro.throw(asyncio.CancelledError("the job's lease lapsed"))
        return self._coro.send(value)

    def throw(
        self,
        typ: type[BaseException] | BaseException,
        val: BaseException | object = None,
        tb: TracebackType | None = None,
    ) -> Any:
        if typ is asyncio.CancelledError or isinstance(typ, asyncio.CancelledError):
            self._fenced = True  # being stopped already: its cleanup may await on
        if val is None and tb is None:
            return self._coro.throw(typ)
        return self._coro.throw(typ, val, tb)  # type: ignore[arg-type]

    def close(self) -> None:
        self._coro.close()

    def __await__(self) -> Generator[Any, None, Any]:
        return self._coro.__await__()

    @property
    def cr_frame(self) -> Any:
        """The handler's frame (what ``Task.get_stack`` shows)."""
        return getattr(self._coro, "cr_frame", None)
