"""Sync handlers in child processes, one handler per child, at most ``slots`` children.

Children are forked from a fork server that has imported the task modules once, so a
child is ready within milliseconds; they are started when first needed (a worker whose
tasks are all async never starts one). Stopping a handler kills its child; a replacement
is started at once and the slot is free again (``Run.freed``) only when the replacement
says it is ready. Each child enforces its job's lease itself (``actors.worker.pool_child``):
the agent renews the expiry in shared memory on every acknowledged heartbeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import multiprocessing
import signal
import sys
import threading
import time
import types
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from actors.errors import HandlerFailed, PoolStartFailed
from actors.worker.executors import Deadline, JobStopped, Run, resolve
from actors.worker.pool_child import EXIT_FENCED, EXIT_TIMED_OUT, child_main
from actors.worker.tasks import JobContext

log = logging.getLogger("corral.worker")


@contextlib.contextmanager
def _without_main() -> Iterator[None]:
    """Hide ``__main__`` while a child is started: multiprocessing would make every child
    re-run the agent's main module (``actors.cli.main`` and all it imports, ~0.3 s) though a
    child needs only ``child_main`` and the task modules, which the fork server preloaded."""
    main = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        sys.modules["__main__"] = main


def _context() -> Any:
    """The fork server where the platform has one (fast children, modules imported once),
    else spawn (each child imports the task modules itself)."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("forkserver")
    return multiprocessing.get_context("spawn")  # pragma: no cover - Windows


@dataclass(slots=True)
class _Job:
    job_id: int
    request: tuple[str, list[Any], dict[str, Any], JobContext, float | None]
    deadline: Deadline
    run: Run
    reporter: Callable[[float, str], None] | None


def _past_timeout(job: _Job) -> bool:
    """Whether the job's timeout, counted from its start, has passed."""
    timeout, started = job.request[4], job.run.started
    if not timeout or not started.done():
        return False
    return time.monotonic() >= started.result() + timeout


class _Child:
    def __init__(self, pool: ProcessRunner) -> None:
        self.pool = pool
        self.deadline = pool.mp.RawValue("d", math.inf)  # the job's lease expiry, renewed
        self.armed = pool.mp.RawValue("d", math.inf)  # what the child's kill timer is set to
        self.conn, theirs = pool.mp.Pipe()
        self.process = pool.mp.Process(
            target=child_main,
            args=(theirs, self.deadline, self.armed, pool.modules),
            daemon=True,
        )
        with _without_main():
            self.process.start()
        theirs.close()
        self.job: _Job | None = None
        self.replacing: Run | None = None  # a killed child's run, freed when we are ready
        self.stopped = False
        loop = asyncio.get_running_loop()
        self.ready: asyncio.Future[None] = loop.create_future()
        reader = threading.Thread(target=self._read, args=(loop,), name="pool-reader", daemon=True)
        reader.start()

    def _read(self, loop: asyncio.AbstractEventLoop) -> None:
        """Blocking reads, in a thread of their own: a result may be megabytes long, and a
        loop's reader callback may find the pipe non-blocking (uvloop) mid-message."""
        while True:
            try:
                message = self.conn.recv()
            except (EOFError, OSError):
                message = None
            try:
                if message is None:
                    loop.call_soon_threadsafe(self._died)
                    return
                loop.call_soon_threadsafe(self._on_message, message)
            except RuntimeError:  # the loop is closed: the worker is gone
                return

    def _on_message(self, message: Any) -> None:
        job = self.job
        match message:
            case ("ready",):
                resolve(self.ready)
                if self.replacing is not None:
                    resolve(self.replacing.freed)
                    self.replacing = None
                self.pool._idle_child(self)
            case ("started", at) if job is not None:
                resolve(job.run.started, at)
            case ("stale",) if job is not None:
                self.job = None
                job.run.never_started()
                self.pool._idle_child(self)
            case ("progress", fraction, text) if job is not None and job.reporter is not None:
                job.reporter(fraction, text)
            case ("done", ok, payload, retry) if job is not None:
                self.job = None
                if ok:
                    resolve(job.run.done, payload)
                else:
                    resolve(job.run.done, exc=HandlerFailed(payload, retry))
                resolve(job.run.freed)
                self.pool._idle_child(self)

    def _died(self) -> None:
        self.conn.close()
        self.process.join(timeout=1)
        code = self.process.exitcode
        job, self.job = self.job, None
        self.pool._child_died(self)
        if not self.ready.done():  # it never got going (its task modules fail to import?)
            text = f"a pool child process exited at start (exit code {code})"
            log.error("%s; see its output above", text)
            self.ready.set_exception(PoolStartFailed(text))
            self.ready.exception()  # marked retrieved: only prepare() awaits it
            if self.replacing is not None:
                resolve(self.replacing.freed)
            self.pool._fail_waiting(text)
        if job is None:
            return
        if self.stopped:
            exc: BaseException = JobStopped()
        elif code == EXIT_FENCED or (code == -signal.SIGKILL and self._lapsed()):
            # Its watchdog's exit, or its kernel timer's SIGKILL at the lease's expiry.
            exc = JobStopped("its process stopped itself: the job's lease lapsed")
        elif code == EXIT_TIMED_OUT or (code == -signal.SIGKILL and _past_timeout(job)):
            exc = JobStopped(f"timed out after {job.request[4]:g}s")  # the agent could not run
        elif code == -signal.SIGKILL and time.monotonic() >= self.armed.value:
            # Its timer fired at an expiry its watchdog could not move on: the handler held
            # the child's GIL (one C call) from before the last renewal it saw until then.
            text = (
                "its process was stopped at the lease expiry it last saw: the handler held "
                "its GIL in one call for longer than that (raise --lease for such tasks)"
            )
            exc = HandlerFailed(text, True)
        else:
            exc = HandlerFailed(f"the handler's process died (exit code {code})", True)
        resolve(job.run.started, time.monotonic())  # it may have died before saying so
        resolve(job.run.done, exc=exc)
        self.pool._replace(job.run)

    def _lapsed(self) -> bool:
        expiry: float = self.deadline.value
        return time.monotonic() >= expiry

    def send(self, job: _Job) -> None:
        self.job = job
        self.deadline.value = job.deadline()
        self.conn.send(job.request)

    def kill(self) -> None:
        self.stopped = True
        self.process.kill()


class ProcessRunner:
    """One child process per running sync handler; a stopped handler's child is killed."""

    def __init__(self, slots: int, modules: list[str]) -> None:
        self.slots = slots
        self.modules = modules
        self.mp = _context()
        self._children: set[_Child] = set()
        self._idle: list[_Child] = []
        self._waiting: deque[_Job] = deque()
        self._closed = False

    async def prepare(self) -> None:
        """Start the fork server (it imports the task modules once) and one child, and wait
        until that child is ready: call it before taking work, so the first job does not
        wait for the imports."""
        if self.mp.get_start_method() == "forkserver":
            self.mp.set_forkserver_preload(["actors.worker.pool_child", *self.modules])
            from multiprocessing import forkserver

            with _without_main():
                forkserver.ensure_running()
        child = _Child(self)
        self._children.add(child)
        await child.ready

    def start(
        self,
        job_id: int,
        task_name: str,
        args: list[Any],
        kwargs: dict[str, Any],
        ctx: JobContext,
        deadline: Deadline,
        timeout: float | None = None,
    ) -> Run:
        run = Run.new(asyncio.get_running_loop())
        if time.monotonic() > deadline():
            return run.never_started()
        # The reporter is a closure over the agent's loop: the child gets a relay instead.
        request = (task_name, args, kwargs, _without_reporter(ctx), timeout)
        self._waiting.append(_Job(job_id, request, deadline, run, ctx.reporter))
        self._dispatch()
        return run

    def _dispatch(self) -> None:
        while self._waiting and not self._closed:
            if self._idle:
                child = self._idle.pop()
            elif len(self._children) < self.slots:
                self._children.add(_Child(self))
                return  # the job waits for the child's "ready"
            else:
                return  # every child is busy: the next one to finish takes it
            job = self._waiting.popleft()
            if time.monotonic() > job.deadline():
                job.run.never_started()
                self._idle.append(child)
                continue
            try:
                child.send(job)
            except Exception as exc:  # its arguments cannot be pickled (nested too deep)
                # Pickling fails before a byte is written: the child is still idle. Raised
                # here from a child's "ready" callback, it would strand the job RUNNING.
                child.job = None
                self._idle.append(child)
                resolve(job.run.started, time.monotonic())
                resolve(job.run.done, exc=HandlerFailed(f"could not start: {exc!r}", True))
                resolve(job.run.freed)

    def _fail_waiting(self, text: str) -> None:
        """Fail the jobs waiting for a child when none could start: retrying them later
        (with the scheduler's backoff) beats a tight loop of failing forks."""
        while self._waiting and not self._idle:
            job = self._waiting.popleft()
            resolve(job.run.started, time.monotonic())
            resolve(job.run.done, exc=HandlerFailed(text, True))
            resolve(job.run.freed)

    def _idle_child(self, child: _Child) -> None:
        self._idle.append(child)
        self._dispatch()

    def _child_died(self, child: _Child) -> None:
        self._children.discard(child)
        if child in self._idle:
            self._idle.remove(child)

    def _replace(self, run: Run) -> None:
        """Start a child in place of a dead one; ``run``'s slot is free once it is ready."""
        if self._closed:
            resolve(run.freed)
            return
        child = _Child(self)
        child.replacing = run
        self._children.add(child)

    def renew(self) -> None:
        """Give every running child its job's current lease expiry (an acknowledged
        heartbeat moved it): what its watchdog compares the clock with."""
        for child in self._children:
            if child.job is not None:
                child.deadline.value = child.job.deadline()

    def stop(self, job_id: int) -> None:
        for job in list(self._waiting):
            if job.job_id == job_id:  # not started yet: it never will be
                self._waiting.remove(job)
                resolve(job.run.started, time.monotonic())
                resolve(job.run.done, exc=JobStopped())
                resolve(job.run.freed)
        for child in self._children:
            if child.job is not None and child.job.job_id == job_id:
                child.kill()  # the reader sees EOF: _died() settles the run

    def close(self) -> None:
        self._closed = True
        for child in list(self._children):
            child.kill()
            child.process.join(timeout=5)
            child.conn.close()
        self._children.clear()


def _without_reporter(ctx: JobContext) -> JobContext:
    import dataclasses

    return dataclasses.replace(ctx, reporter=None)
