"""How a worker runs one handler: on its event loop or in a thread (child processes are in
``actors.worker.process_pool``), and how it stops one.

Every runner hands back a :class:`Run` with three futures, because "the job ended" and
"the slot can run again" are different moments:

- ``started``: the handler really began (its start time), or ``LeaseLapsed`` if the
  job's lease could not be shown valid right before it would have begun: then it never
  ran. The job's timeout counts from here, not from when the job was queued.
- ``done``: the handler's value or exception (``JobStopped`` when it was stopped; an
  async handler's own task, cancelled when it was stopped: read it with ``ended_by``).
- ``freed``: the slot can run another handler. A thread stuck in a C call after its
  timeout keeps its slot until the call returns; only then is the slot given back.

Async handlers are stopped by task cancellation. Sync handlers in threads are stopped
by raising ``JobStopped`` inside their thread (CPython's async-exception hook); that
lands at the handler's next Python bytecode, so a handler blocked in a long C call
(``time.sleep(600)``) stops only when the call returns: the process pool (the default
for sync tasks) kills its child instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import ctypes
import functools
import queue
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from actors.errors import LeaseLapsed
from actors.worker.lease_bound import LEASE, LeaseBound, task_factory

Deadline = Callable[[], float]  # the job's lease expiry, CLOCK_MONOTONIC, read when needed


class JobStopped(BaseException):
    """Raised inside a handler that the worker stopped (self-fenced, cancelled, timed out).

    A BaseException, like asyncio.CancelledError, so a handler's ``except Exception``
    does not swallow it: the one exception corral raises that is not a ``CorralError``
    (which derives from ``Exception``)."""


@dataclass(slots=True)
class Run:
    """One handler execution, as seen from the worker's loop."""

    started: asyncio.Future[float]
    done: asyncio.Future[Any]
    freed: asyncio.Future[None]

    @classmethod
    def new(cls, loop: asyncio.AbstractEventLoop) -> Run:
        # No done callbacks: each exception is marked retrieved as it is set (resolve).
        return cls(loop.create_future(), loop.create_future(), loop.create_future())

    def never_started(self) -> Run:
        resolve(self.started, exc=LeaseLapsed())
        self.freed.set_result(None)
        return self


def _retrieved(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


def ended_by(done: asyncio.Future[Any]) -> BaseException | None:
    """The exception a settled ``done`` ended with (None: a value); a cancelled one (an
    async handler's task, stopped) ended with ``JobStopped``."""
    return JobStopped() if done.cancelled() else done.exception()


def resolve(
    future: asyncio.Future[Any], value: Any = None, exc: BaseException | None = None
) -> None:
    """Settle ``future`` unless it already is (the worker may have given up on it). An
    exception is marked retrieved at once: the worker may stop waiting (timeout, stop)
    before it arrives, and asyncio would log it as never retrieved."""
    if future.done():
        return
    if exc is not None:
        future.set_exception(exc)
        future.exception()
    else:
        future.set_result(value)


def _post(loop: asyncio.AbstractEventLoop, settle: Callable[..., None], *args: Any) -> None:
    """Call ``settle(*args)`` on the worker's loop, from a handler's thread."""
    with contextlib.suppress(RuntimeError):  # a closed loop: the worker is gone
        loop.call_soon_threadsafe(settle, *args)


def _ended(run: Run, value: Any, exc: BaseException | None) -> None:
    """A thread's handler ended and its thread is free: ``done``, then ``freed``, in one
    loop callback (one wake-up of the loop per job instead of two)."""
    resolve(run.done, value, exc)
    resolve(run.freed)


class AsyncRunner:
    """Async handlers, as tasks on the worker's own loop."""

    def __init__(self) -> None:
        self._tasks: dict[int, asyncio.Task[Any]] = {}

    def start(
        self,
        job_id: int,
        fn: Callable[..., Coroutine[Any, Any, Any]],
        args: list[Any],
        kwargs: dict[str, Any],
        context: contextvars.Context,
        deadline: Deadline,
    ) -> Run:
        loop = asyncio.get_running_loop()
        now = time.monotonic()
        if now > deadline():
            return Run.new(loop).never_started()
        started = loop.create_future()
        started.set_result(now)
        # After a pause past the lease, no step of it, or of a task it started, runs
        # before the fence (actors.worker.lease_bound).
        if loop.get_task_factory() is not task_factory:
            loop.set_task_factory(task_factory)
        context.run(LEASE.set, deadline)
        handler = LeaseBound(fn(*args, **kwargs), deadline)
        # As loop.create_task does, without its factory's Python call (wrapped already).
        task = asyncio.Task(handler, loop=loop, name=f"handler-{job_id}", context=context)
        self._tasks[job_id] = task
        task.add_done_callback(functools.partial(self._finished, job_id))
        # The task is the run's ``done`` (a cancelled one: stopped, see ``ended_by``) and
        # its ``freed``: no futures, callbacks or loop turns beyond the task's own.
        return Run(started, task, task)

    def _finished(self, job_id: int, task: asyncio.Task[Any]) -> None:
        if self._tasks.get(job_id) is task:
            del self._tasks[job_id]
        _retrieved(task)

    def stop(self, job_id: int) -> None:
        task = self._tasks.get(job_id)
        if task is not None:
            handler = task.get_coro()
            if isinstance(handler, LeaseBound):
                handler.stop()  # one cancel: its cleanup may await
            task.cancel()

    def close(self) -> None:
        for task in list(self._tasks.values()):
            task.cancel()


@dataclass(slots=True)
class _Item:
    job_id: int
    fn: Callable[..., Any]
    args: list[Any]
    kwargs: dict[str, Any]
    context: contextvars.Context
    deadline: Deadline
    run: Run
    loop: asyncio.AbstractEventLoop


class ThreadRunner:
    """Sync handlers in up to ``slots`` daemon threads (daemon: a handler stuck in a C call
    must not keep a stopped worker's process alive)."""

    def __init__(self, slots: int) -> None:
        self._slots = slots
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._idle = 0  # threads waiting for an item that no start() has claimed yet
        self._lock = threading.Lock()
        self._running: dict[int, int] = {}  # job id -> thread ident while its handler runs
        self._queued: set[int] = set()  # started, not yet taken by a thread
        self._stopped: set[int] = set()  # stopped before a thread took them: never start

    def start(
        self,
        job_id: int,
        fn: Callable[..., Any],
        args: list[Any],
        kwargs: dict[str, Any],
        context: contextvars.Context,
        deadline: Deadline,
    ) -> Run:
        loop = asyncio.get_running_loop()
        run = Run.new(loop)
        with self._lock:
            if self._idle > 0:
                self._idle -= 1
            elif len(self._threads) < self._slots:
                thread = threading.Thread(
                    target=self._serve, name=f"corral-task-{len(self._threads)}", daemon=True
                )
                self._threads.append(thread)
                thread.start()
            # else: more jobs than slots (a scheduler bug); it waits for a thread.
            self._queued.add(job_id)
        self._queue.put(_Item(job_id, fn, args, kwargs, context, deadline, run, loop))
        return run

    def _serve(self) -> None:
        while True:
            try:
                item = self._queue.get()
                if item is None:
                    return
                self._work(item)
                with self._lock:
                    self._idle += 1
            except JobStopped:  # a stop that landed between two handlers: nothing to stop
                with self._lock:
                    self._idle += 1

    def _work(self, item: _Item) -> None:
        run = item.run
        now = time.monotonic()
        if now > item.deadline():  # the job waited for this thread past its lease
            with self._lock:
                self._queued.discard(item.job_id)
                self._stopped.discard(item.job_id)
            _post(item.loop, resolve, run.started, None, LeaseLapsed())
            _post(item.loop, resolve, run.freed)
            return
        with self._lock:
            self._queued.discard(item.job_id)
            stopped = item.job_id in self._stopped
            self._stopped.discard(item.job_id)
            if not stopped:
                self._running[item.job_id] = threading.get_ident()
        _post(item.loop, resolve, run.started, now)
        if stopped:
            _post(item.loop, _ended, run, None, JobStopped())
            return
        value: Any = None
        error: BaseException | None = None
        try:
            try:
                value = item.context.run(item.fn, *item.args, **item.kwargs)
            except BaseException as exc:  # the worker decides what each exception means
                error = exc
            finally:
                self._forget(item.job_id)
        except JobStopped as exc:  # landed after the handler returned, before _forget
            self._forget(item.job_id)
            error = exc
        _post(item.loop, _ended, run, value, error)

    def _forget(self, job_id: int) -> None:
        with self._lock:
            if self._running.pop(job_id, None) is not None:
                # A stop sent just before this point must not land in the next handler.
                ctypes.pythonapi.PyThreadState_SetAsyncExc(
                    ctypes.c_ulong(threading.get_ident()), None
                )

    def stop(self, job_id: int) -> None:
        with self._lock:
            ident = self._running.get(job_id)
            if ident is None:
                if job_id in self._queued:
                    self._stopped.add(job_id)  # queued: it must not start
            else:
                ctypes.pythonapi.PyThreadState_SetAsyncExc(
                    ctypes.c_ulong(ident), ctypes.py_object(JobStopped)
                )

    def busy(self) -> int:
        with self._lock:
            return len(self._running)

    def close(self) -> None:
        for job_id in list(self._running):
            self.stop(job_id)
        for _ in self._threads:
            self._queue.put(None)
