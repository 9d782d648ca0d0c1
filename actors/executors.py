"""How a worker runs one handler: on its event loop, in a thread, or in a child process.

Each runner can also *stop* a running handler, which self-fencing, cancellation
and timeouts need:

- async handlers run on the worker's loop and are stopped by task cancellation;
- ``ThreadRunner`` runs sync handlers in a thread pool; a handler is stopped by
  raising ``JobStopped`` inside its thread (CPython's async-exception hook). That
  takes effect at the handler's next Python bytecode, so a handler blocked in a
  long C call (``time.sleep(600)``, a socket read) stops only when the call
  returns; use ``--pool process`` for handlers that must be stoppable at once;
- ``ProcessRunner`` runs sync handlers in one child process per slot; a handler
  is stopped by killing its process (then a fresh one replaces it). It also
  keeps CPU-bound handlers from holding the worker's GIL.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import ctypes
import dataclasses
import importlib
import logging
import multiprocessing
import multiprocessing.connection
import threading
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

log = logging.getLogger("corral.worker")


class JobStopped(BaseException):
    """Raised inside a handler that the worker stopped (self-fenced, cancelled, timed out).

    A BaseException, like asyncio.CancelledError, so a handler's ``except Exception``
    does not swallow it."""


class HandlerError(Exception):
    """Raised by ProcessRunner when the handler failed in its child; carries the traceback text."""


class ThreadRunner:
    def __init__(self, slots: int) -> None:
        self._executor = ThreadPoolExecutor(slots, thread_name_prefix="corral-task")
        self._threads: dict[int, int] = {}  # job id -> thread ident while it runs
        self._lock = threading.Lock()

    async def run(
        self, job_id: int, fn: Callable[..., Any], args: list[Any], kwargs: dict[str, Any]
    ) -> Any:
        run_in_context = contextvars.copy_context().run

        def call() -> Any:
            with self._lock:
                self._threads[job_id] = threading.get_ident()
            try:
                return run_in_context(fn, *args, **kwargs)
            finally:
                with self._lock:
                    self._threads.pop(job_id, None)

        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    def stop(self, job_id: int) -> None:
        with self._lock:
            ident = self._threads.get(job_id)
            if ident is not None:
                ctypes.pythonapi.PyThreadState_SetAsyncExc(
                    ctypes.c_ulong(ident), ctypes.py_object(JobStopped)
                )

    def close(self) -> None:
        for job_id in list(self._threads):
            self.stop(job_id)
        self._executor.shutdown(wait=False, cancel_futures=True)


def _child_main(conn: multiprocessing.connection.Connection, modules: list[str]) -> None:
    """A process-pool slot: import the task modules, then run handlers sent over the pipe."""
    from actors import worker

    for module in modules:
        importlib.import_module(module)
    while True:
        try:
            request = conn.recv()
        except EOFError:
            return
        task_name, args, kwargs, ctx = request
        relay = dataclasses.replace(ctx, reporter=lambda f, m: conn.send(("progress", f, m)))
        token = worker._current.set(relay)
        try:
            fn = worker.REGISTRY[task_name]
            value = fn(*args, **kwargs)
            if asyncio.iscoroutine(value):
                value = asyncio.run(value)
            conn.send(("done", True, value))
        except Exception:
            conn.send(("done", False, traceback.format_exc()))
        finally:
            worker._current.reset(token)


class _Slot:
    def __init__(self, modules: list[str]) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_child_main, args=(child, modules), daemon=True)
        self.process.start()
        child.close()

    def kill(self) -> None:
        self.process.kill()
        self.process.join(timeout=5)
        self.conn.close()


class ProcessRunner:
    """One child process per slot; stopping a handler kills (and replaces) its process."""

    def __init__(self, slots: int, modules: list[str]) -> None:
        self.modules = modules
        self._free: asyncio.Queue[_Slot] = asyncio.Queue()
        for _ in range(slots):
            self._free.put_nowait(_Slot(modules))
        self._busy: dict[int, _Slot] = {}

    async def run(
        self, job_id: int, task_name: str, args: list[Any], kwargs: dict[str, Any], ctx: Any
    ) -> Any:
        slot = await self._free.get()
        self._busy[job_id] = slot
        loop = asyncio.get_running_loop()
        reply: asyncio.Future[Any] = loop.create_future()
        fd = slot.conn.fileno()

        def readable() -> None:
            try:
                value = slot.conn.recv()
            except (EOFError, OSError) as exc:
                value = exc
            if isinstance(value, tuple) and value[0] == "progress":
                if ctx.reporter is not None:
                    ctx.reporter(value[1], value[2])
                return  # keep waiting for the result
            loop.remove_reader(fd)
            if not reply.done():
                reply.set_result(value if isinstance(value, Exception) else value[1:])

        try:
            # The reporter is a closure over this process's loop: the child gets its own.
            slot.conn.send((task_name, args, kwargs, dataclasses.replace(ctx, reporter=None)))
            loop.add_reader(fd, readable)
            outcome = await reply
        except BaseException:
            self._replace(slot)  # stopped or cancelled mid-run: the child may still be busy
            raise
        finally:
            self._busy.pop(job_id, None)
        if isinstance(outcome, (EOFError, OSError)):
            self._replace(slot)
            raise JobStopped(f"handler process died: {outcome!r}")
        self._free.put_nowait(slot)
        ok, value = outcome
        if not ok:
            raise HandlerError(value)
        return value

    def _replace(self, slot: _Slot) -> None:
        with contextlib.suppress(ValueError, OSError):  # the pipe may be closed already
            asyncio.get_running_loop().remove_reader(slot.conn.fileno())
        slot.kill()
        self._free.put_nowait(_Slot(self.modules))

    def stop(self, job_id: int) -> None:
        slot = self._busy.get(job_id)
        if slot is not None:
            slot.process.kill()  # the reader sees EOF; run() replaces the slot

    def close(self) -> None:
        for slot in list(self._busy.values()):
            slot.kill()
        while not self._free.empty():
            self._free.get_nowait().kill()
