"""An async handler, and every task it starts, takes no step past its job's lease.

An async handler runs as a task on the worker's own event loop, whatever the pool. When
the worker process is paused past its jobs' leases (SIGSTOP, a frozen container) and
resumed, the loop wakes with the handlers' timers due and their tasks ready: without a
check, each would take its next step (and often finish) before the worker's fence loop
ran, while the scheduler had already given the job to another worker.

``LeaseBound`` wraps a coroutine and compares the clock with the lease's expiry before
each step. Past it, the step is not taken: the task is cancelled, a real ``task.cancel()``
(so an ``asyncio.timeout`` in the handler cannot turn it into a ``TimeoutError`` it
handles), and the handler gets ``CancelledError`` at the ``await`` it was suspended in;
the worker then reports the job self-fenced. As with a stop, code in the handler's
``except CancelledError`` or ``finally`` still runs, once: a stopped or fenced handler is
not cancelled again. Tasks a handler starts (``asyncio.gather``, ``TaskGroup``,
``create_task``, ``wait_for``) are wrapped too: the worker's loop gets ``task_factory``,
which wraps every task created while a handler's lease is in the context (``LEASE``).
Threads a handler starts (``to_thread``) are beyond reach (README, "Limits").

A task takes any object that is a ``collections.abc.Coroutine``; this one forwards
``send``, ``throw`` and ``close`` to the handler's coroutine.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import Callable, Coroutine, Generator
from types import TracebackType
from typing import Any

_monotonic = time.monotonic
LAPSED = "the job's lease lapsed"

# The lease of the handler whose context this is: set in a handler's context, inherited by
# every task it starts (a task copies its creator's context).
LEASE: contextvars.ContextVar[Callable[[], float]] = contextvars.ContextVar("corral_lease")


class LeaseBound(Coroutine[Any, Any, Any]):
    """``coro``, refused its next step once ``time.monotonic()`` is past ``deadline()``."""

    __slots__ = ("_coro", "_deadline", "_fenced")

    def __init__(self, coro: Coroutine[Any, Any, Any], deadline: Callable[[], float]) -> None:
        self._coro = coro
        self._deadline = deadline
        self._fenced = False  # stopped or fenced already: its cleanup may await on

    def stop(self) -> None:
        """The worker stops it (one cancel, as asked): no lease check cancels it again."""
        self._fenced = True

    def send(self, value: Any) -> Any:
        if not self._fenced and _monotonic() > self._deadline():
            self._fenced = True
            task = asyncio.current_task()
            if task is None:  # driven outside a task: say it at once
                return self._coro.throw(asyncio.CancelledError(LAPSED))
            task.cancel(LAPSED)
            return None  # a bare yield: the task throws CancelledError in at the next step
        return self._coro.send(value)

    def throw(
        self,
        typ: type[BaseException] | BaseException,
        val: BaseException | object = None,
        tb: TracebackType | None = None,
    ) -> Any:
        if not self._fenced and _monotonic() > self._deadline():
            # Thrown in after the lease lapsed (an asyncio.timeout's cancel that came due
            # during a pause, say): a cancel request of our own as well, so the handler
            # cannot take it for its timeout and carry on.
            self._fenced = True
            task = asyncio.current_task()
            if task is not None:
                task.cancel(LAPSED)
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


def task_factory(
    loop: asyncio.AbstractEventLoop,
    coro: Any,
    context: contextvars.Context | None = None,
) -> asyncio.Task[Any]:
    """The worker loop's task factory: a task created inside a handler (its lease in the
    context) is lease-bound like the handler itself; any other task is a plain one."""
    deadline = LEASE.get(None)
    if deadline is not None and not isinstance(coro, LeaseBound):
        coro = LeaseBound(coro, deadline)
    return asyncio.Task(coro, loop=loop, context=context)
