"""The election's own thread: a scheduler on PostgreSQL runs its election (the session
with the leader row, and ``Leadership``'s loops on it) on an event loop of its own, in a
thread beside the event loop that serves.

Why: the leader renews its term every quarter of the TTL, and on the serving loop a
renewal waited for whatever step that loop was in. A new leader loading a 400,000-job
backlog takes steps of 0.1-0.3 s of CPU; on a machine busy with other processes each
stretched past a second of wall time, so no renewal succeeded for 1.75 s of the 2 s
term and the leader gave up the term it had just loaded (seen in CI, 2 runs in 8). On
its own thread a renewal waits only for the GIL, which the serving thread hands over
every few milliseconds (``sys.getswitchinterval``).

A serving loop that stops running altogether (an actor stuck in a loop) must not keep
the term forever with nobody served: ``serving_idle`` is how long that loop has gone
without running a tick, over which ``Leadership.hold`` resigns the term
(``leadership.stall_limit``: under the workers' lease, so they carry their jobs to the
next leader).

Safety does not depend on any of this: every commit of the leader is fenced by its term
in the database (``postgres_leader.fence``), whichever thread renews it.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

# The serving loop records that it ran this often (a timer on it).
TICK_S = 0.1


class ElectionThread:
    """A daemon thread running an event loop for the election; ``run`` awaits a coroutine
    run there from the serving loop. ``start`` and ``close`` are called on the serving
    loop (``close`` also from ``finally`` after a failed start)."""

    def __init__(self, name: str = "corral-election") -> None:
        self._name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ticker: asyncio.TimerHandle | None = None
        self._serving_ran_at = time.monotonic()

    def start(self) -> None:
        """Start the thread and its loop, and the serving loop's tick. (What ``run`` sends
        before the loop turns waits in the loop's queue.)"""
        loop = asyncio.new_event_loop()

        def main() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_forever()
            finally:
                _cancel_leftovers(loop)
                loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=main, name=self._name, daemon=True)
        self._thread.start()
        self._tick()

    def _tick(self) -> None:
        self._serving_ran_at = time.monotonic()
        self._ticker = asyncio.get_running_loop().call_later(TICK_S, self._tick)

    def serving_idle(self) -> float:
        """Seconds since the serving loop last ran its tick (read from the election's
        thread: one float, written whole)."""
        return max(0.0, time.monotonic() - self._serving_ran_at - TICK_S)

    async def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """``coroutine``'s result, run on the election's loop. Cancelling the caller
        cancels it there (``run_coroutine_threadsafe`` passes the cancellation on)."""
        if self._loop is None:
            coroutine.close()
            raise RuntimeError("the election thread is not running")
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        return await asyncio.wrap_future(future)

    async def close(self) -> None:
        """Stop the loop (cancelling what still runs on it) and join the thread."""
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
        loop, thread, self._loop, self._thread = self._loop, self._thread, None, None
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        await asyncio.to_thread(thread.join)


def _cancel_leftovers(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel the tasks still on ``loop`` and let them end, as ``asyncio.run`` does."""
    leftovers = asyncio.all_tasks(loop)
    for task in leftovers:
        task.cancel()
    if leftovers:
        loop.run_until_complete(asyncio.gather(*leftovers, return_exceptions=True))
    loop.run_until_complete(loop.shutdown_asyncgens())
