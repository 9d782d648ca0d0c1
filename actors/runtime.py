"""The actor runtime: mailboxes, run loops and supervision.

An actor is one asyncio task draining a mailbox, plus any background loops it
spawns, with private state; others reach it only through ``tell``. The
``ActorSystem`` supervises: an actor that raises is restarted if it declares
itself restartable (and has not crashed too often), otherwise the whole system
stops and ``run()`` raises ActorCrashed, so the process exits non-zero with the
cause logged. An actor is never silently dead.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import AsyncIterator, Coroutine, Iterator, Sequence
from typing import Any, TypeVar

from actors.errors import ActorCrashed
from actors.metrics import MetricsBoard

log = logging.getLogger("corral.actors")

# Actors publish metric snapshots this often (see actors.metrics).
PUBLISH_EVERY_S = 1.0


class _Publish:
    """The ticker's message: publish your metrics snapshot now."""


PUBLISH = _Publish()

# Work on one large batch gives the event loop back after every slice this long (about 5 ms
# of converting or queueing jobs here): a new leader loads its whole backlog, hundreds of
# thousands of jobs, while the same loop must renew its term every half second (a quarter
# of --leader-ttl) and answer hellos. Done in one go, such a load outlasted the term.
SLICE = 2_000

T = TypeVar("T")


async def in_slices(items: Sequence[T], size: int = SLICE) -> AsyncIterator[Sequence[T]]:
    """``items`` in slices of ``size``, letting other tasks run between two slices (one
    slice, and no pause, for a batch no larger than ``size``)."""
    for start in range(0, len(items), size):
        if start:
            await asyncio.sleep(0)
        yield items[start : start + size]


# The cyclic GC's youngest-generation threshold in the scheduler's process (Python's is 700
# container allocations). With 700, a throughput run's scheduler collected about 1,000
# times per 200,000 jobs, and its middle and oldest generations 90 and 7 times, holding the
# loop 0.7 and 7 ms each: 200-270 ms in all. With 50,000: 43 and 3 collections, 30-40 ms
# (bench/README, part 9). Garbage without cycles is freed at once either way; the scheduler
# runs no user code and makes little cyclic garbage. Workers keep Python's thresholds.
YOUNG_GC_THRESHOLD = 50_000
_THRESHOLDS_AT_IMPORT = gc.get_threshold()


def settle_gc() -> None:
    """Once the scheduler has started: freeze what start-up allocated (it lives as long as
    the process) out of later collections' way, and collect the youngest generation every
    ``YOUNG_GC_THRESHOLD`` allocations instead of Python's 700, unless the thresholds were
    changed since this module was imported (someone's own choice stands)."""
    gc.freeze()
    thresholds = gc.get_threshold()
    if thresholds == _THRESHOLDS_AT_IMPORT and thresholds[0] < YOUNG_GC_THRESHOLD:
        gc.set_threshold(YOUNG_GC_THRESHOLD, *thresholds[1:])


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """The cyclic GC off during a bulk load of objects that all stay (a new leader's
    backlog): its full collections grow with the heap and held the loop 0.5 to 0.9 s each
    at 400,000 jobs, long enough together to lapse the term being loaded for. The caller
    freezes what it loaded right after (``gc.freeze``), out of later collections' way."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


# A restartable actor that crashes more than this many times in this window is
# broken, not unlucky: escalate instead of looping.
MAX_RESTARTS = 3
RESTART_WINDOW_S = 60.0


class Actor:
    """Base class: override ``handle``; optionally ``on_start`` / ``on_stop``."""

    restartable = False

    def __init__(self, name: str | None = None) -> None:
        self.name = name or type(self).__name__
        self.mailbox: asyncio.Queue[Any] = asyncio.Queue()
        self.system: ActorSystem | None = None
        self.board: MetricsBoard | None = None

    def tell(self, message: Any) -> None:
        """Deliver a message; never blocks (mailboxes are unbounded; producers batch)."""
        self.mailbox.put_nowait(message)

    async def on_start(self) -> None:
        """Runs before the first message (and again after a restart)."""

    async def on_stop(self) -> None:
        """Runs once when the system stops."""

    async def handle(self, message: Any) -> None:
        raise NotImplementedError

    def on_idle(self) -> None:
        """Runs when the mailbox has just been emptied, whatever the last message was:
        the place for work done once per burst of messages rather than per message."""

    def metrics(self) -> dict[str, Any] | None:
        """This actor's metrics snapshot (immutable values), or None if it has none."""
        return None

    def _publish_metrics(self) -> None:
        snapshot = self.metrics()
        if snapshot is not None and self.board is not None:
            self.board.publish(self.name, snapshot)

    def spawn(self, coro: Coroutine[Any, Any, None], label: str) -> None:
        """Run a background loop under the same supervision as the actor itself."""
        assert self.system is not None, "spawn() needs a started actor"
        self.system._watch(self, asyncio.create_task(coro, name=f"{self.name}.{label}"))

    async def _run(self) -> None:
        await self.on_start()
        await self._serve()

    async def _serve(self) -> None:
        """The mailbox loop alone (tests drive an actor through it without ``on_start``)."""
        mailbox = self.mailbox
        while True:
            message = await mailbox.get()
            if message is PUBLISH:
                self._publish_metrics()
            else:
                await self.handle(message)
            if mailbox.empty():
                self.on_idle()


class ActorSystem:
    """Starts actors, supervises them, and stops them all together."""

    def __init__(self, board: MetricsBoard | None = None) -> None:
        self.board = board or MetricsBoard()
        self.actors: list[Actor] = []
        self._tasks: dict[asyncio.Task[None], Actor] = {}
        self._failure: asyncio.Future[BaseException] | None = None
        self._crashes: dict[str, list[float]] = {}
        self._stopping = False

    def add(self, actor: Actor) -> Actor:
        self.actors.append(actor)
        actor.system = self
        actor.board = self.board
        return actor

    async def start(self) -> None:
        self._failure = asyncio.get_running_loop().create_future()
        for actor in self.actors:
            self._watch(actor, asyncio.create_task(actor._run(), name=actor.name))
        ticker = self.actors[0] if self.actors else None
        if ticker is not None:
            self._watch(ticker, asyncio.create_task(self._tick(), name="metrics-ticker"))

    async def _tick(self) -> None:
        """Ask every actor to publish its metrics once a second (a message, handled in turn)."""
        while True:
            await asyncio.sleep(PUBLISH_EVERY_S)
            for actor in self.actors:
                actor.tell(PUBLISH)

    def _watch(self, actor: Actor, task: asyncio.Task[None]) -> None:
        self._tasks[task] = actor
        task.add_done_callback(self._on_done)

    def _on_done(self, task: asyncio.Task[None]) -> None:
        actor = self._tasks.pop(task, None)
        if actor is None or self._stopping or task.cancelled():
            return
        exc = task.exception() or RuntimeError(f"{task.get_name()} returned unexpectedly")
        log.error("actor %s crashed", task.get_name(), exc_info=exc)
        if actor.restartable and self._may_restart(actor.name):
            log.warning("restarting actor %s", actor.name)
            self._watch(actor, asyncio.create_task(actor._run(), name=actor.name))
            return
        self.fail(ActorCrashed(task.get_name(), exc))

    def _may_restart(self, name: str) -> bool:
        now = time.monotonic()
        recent = [t for t in self._crashes.get(name, []) if now - t < RESTART_WINDOW_S]
        recent.append(now)
        self._crashes[name] = recent
        return len(recent) <= MAX_RESTARTS

    def fail(self, exc: BaseException) -> None:
        """Stop the system with ``exc`` as the reason ``run()`` raises."""
        if self._failure is not None and not self._failure.done():
            self._failure.set_result(exc)

    def request_stop(self) -> None:
        """Ask ``run()`` to return normally (a clean shutdown)."""
        if self._failure is not None and not self._failure.done():
            self._failure.set_result(_CleanStop())

    async def run(self) -> None:
        """Wait until the system fails (raise) or is asked to stop (return)."""
        assert self._failure is not None, "start() first"
        try:
            reason = await self._failure
        finally:
            await self.stop()
        if not isinstance(reason, _CleanStop):
            raise reason

    async def stop(self) -> None:
        if self._stopping:
            return
        self._stopping = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for actor in reversed(self.actors):
            try:
                await actor.on_stop()
            except Exception:
                log.exception("actor %s failed while stopping", actor.name)


class _CleanStop(Exception):
    pass
