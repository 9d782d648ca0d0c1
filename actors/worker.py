"""The worker agent: runs registered task functions for the scheduler.

Register tasks with ``@task`` (named ``module.function`` unless
``@task(name=...)``). Sync functions run in a thread pool of ``concurrency``
threads, async ones on the event loop. The worker pulls work by credit: its
hello announces its slots and every result returns one, so it is never sent
more than it can run. Results are batched into one frame per loop turn and
kept until the scheduler acknowledges them (resent after a reconnect).

Inside a handler, ``context()`` gives the running job's id, fencing token,
attempt and idempotency key, to make external effects idempotent.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import logging
import os
import signal
import socket
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar, overload

from actors.errors import TaskNotFound
from transport import ClientTransport, connect
from transport import protocol as wire
from transport.errors import BadFrame

log = logging.getLogger("corral.worker")

F = TypeVar("F", bound=Callable[..., Any])

REGISTRY: dict[str, Callable[..., Any]] = {}

# A worker that hears no Welcome re-sends its hello this often, so it finds a
# scheduler that starts (or restarts) after it.
HELLO_RETRY_S = 1.0


@overload
def task(fn: F, /) -> F: ...
@overload
def task(*, name: str | None = None) -> Callable[[F], F]: ...


def task(fn: Any = None, /, *, name: str | None = None) -> Any:
    """Register a function as a corral task: ``@task`` or ``@task(name="billing.invoice")``."""

    def register(func: F) -> F:
        REGISTRY[name or f"{func.__module__}.{func.__qualname__}"] = func
        return func

    return register(fn) if fn is not None else register


@dataclass(frozen=True, slots=True)
class JobContext:
    """What a handler may know about the execution it is part of."""

    job_id: int
    token: int  # fencing token: grows with every attempt; pass it to external systems
    attempt: int
    idempotency_key: str | None
    worker: str


_current: contextvars.ContextVar[JobContext] = contextvars.ContextVar("corral_job")


def context() -> JobContext:
    """The running job's context; only valid inside a task handler."""
    try:
        return _current.get()
    except LookupError:
        raise RuntimeError("corral.context() called outside a running task") from None


def default_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class Worker:
    def __init__(
        self,
        address: str,
        *,
        name: str | None = None,
        concurrency: int = 4,
        queues: tuple[str, ...] = ("default",),
        registry: dict[str, Callable[..., Any]] | None = None,
    ) -> None:
        self.address = address
        self.name = name or default_name()
        self.concurrency = concurrency
        self.queues = queues
        self.registry = REGISTRY if registry is None else registry
        self.heartbeat_interval = 1.0
        self.running: dict[int, asyncio.Task[None]] = {}
        self.tokens: dict[int, int] = {}
        self.unacked: dict[int, wire.JobResult] = {}
        self.executed = 0
        self._outbox: list[wire.JobResult] = []
        self._flush_scheduled = False
        self._transport: ClientTransport | None = None
        self._executor = ThreadPoolExecutor(concurrency, thread_name_prefix="corral-task")
        self._welcomed = asyncio.Event()
        self._stopping = False

    # ------------------------------------------------------------------ wiring

    def _send(self, message: wire.Message) -> None:
        assert self._transport is not None
        self._transport.send(wire.encode(message))

    def _hello(self) -> None:
        self._welcomed.clear()
        self._send(
            wire.WorkerHello(
                wire.PROTOCOL_VERSION,
                self.name,
                self.concurrency,
                list(self.queues),
                sorted(self.registry),
            )
        )

    async def run(self) -> None:
        """Serve until ``stop()``; then finish held jobs, flush results, say goodbye."""
        self._transport = connect(self.address)
        loop = asyncio.get_running_loop()
        reader = loop.create_task(self._read_loop(), name="worker.read")
        beats = loop.create_task(self._heartbeat_loop(), name="worker.heartbeat")
        try:
            self._hello()
            while not self._stopping:
                try:
                    await asyncio.wait_for(self._welcomed.wait(), HELLO_RETRY_S)
                except TimeoutError:
                    self._hello()
                    continue
                await self._stop_requested.wait()
            await self._drain()
        finally:
            reader.cancel()
            beats.cancel()
            await asyncio.gather(reader, beats, return_exceptions=True)
            self._executor.shutdown(wait=False, cancel_futures=True)
            await self._transport.close()

    @functools.cached_property
    def _stop_requested(self) -> asyncio.Event:
        return asyncio.Event()

    def stop(self) -> None:
        self._stopping = True
        self._stop_requested.set()
        self._welcomed.set()

    async def _drain(self, timeout: float = 30.0) -> None:
        """Stop taking work, finish what we hold, wait for acks, leave."""
        self._send(wire.Drain())
        deadline = time.monotonic() + timeout
        # Polled: it ends on a deadline too, and happens once per worker lifetime.
        while (self.running or self.unacked) and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        self._send(wire.Goodbye())
        await asyncio.sleep(0.05)  # let the frame leave before the socket closes

    async def _read_loop(self) -> None:
        assert self._transport is not None
        while True:
            for frame in await self._transport.recv_batch():
                try:
                    message = wire.decode_reply(frame)
                except BadFrame as exc:
                    log.error("unreadable frame from scheduler: %s", exc)
                    continue
                self._on_message(message)

    def _on_message(self, message: wire.FromScheduler) -> None:
        match message:
            case wire.Assign(assignments=assignments):
                for assignment in assignments:
                    self._start(assignment)
            case wire.ResultsAck(job_ids=acked, refused=refused):
                for job_id in acked:
                    self.unacked.pop(job_id, None)
                for job_id in refused:
                    self.unacked.pop(job_id, None)
                    log.warning("scheduler refused our result for job %d (stale lease)", job_id)
            case wire.Welcome(heartbeat_interval=interval):
                self.heartbeat_interval = interval
                if not self._welcomed.is_set():
                    log.info("worker %s connected to %s", self.name, self.address)
                    self._welcomed.set()
                    if self.unacked:  # results a restarted scheduler may not have
                        self._send(wire.Results(list(self.unacked.values())))
            case wire.ErrorReply(code="hello_first"):
                self._hello()  # the scheduler restarted and forgot us
            case wire.ErrorReply(code=code, message=text):
                log.error("scheduler refused a frame: %s: %s", code, text)
            case _:
                log.warning("ignoring unexpected %s", type(message).__name__)

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            if self._welcomed.is_set():
                self._send(wire.Heartbeat(list(self.tokens.items())))

    # ---------------------------------------------------------------- running

    def _start(self, assignment: wire.Assignment) -> None:
        if len(self.running) >= self.concurrency:
            log.error(
                "scheduler sent job %d beyond our %d slots", assignment.job_id, self.concurrency
            )
        self.tokens[assignment.job_id] = assignment.token
        self.running[assignment.job_id] = asyncio.get_running_loop().create_task(
            self._execute(assignment), name=f"job-{assignment.job_id}"
        )

    async def _execute(self, a: wire.Assignment) -> None:
        ctx = JobContext(a.job_id, a.token, a.attempt, a.idempotency_key, self.name)
        try:
            value = await self._call(a, ctx)
            result = wire.JobResult(a.job_id, a.token, True, wire.pack(value))
        except asyncio.CancelledError:
            raise
        except TimeoutError:
            result = wire.JobResult(
                a.job_id, a.token, False, error=f"timed out after {a.timeout:g}s"
            )
        except Exception:
            result = wire.JobResult(a.job_id, a.token, False, error=traceback.format_exc())
        finally:
            self.running.pop(a.job_id, None)
            self.tokens.pop(a.job_id, None)
        self.executed += 1
        self._report(result)

    async def _call(self, a: wire.Assignment, ctx: JobContext) -> Any:
        fn = self.registry.get(a.task)
        if fn is None:
            raise TaskNotFound(
                f"task {a.task!r} is not registered on worker {self.name} "
                f"(it has: {', '.join(sorted(self.registry)) or 'none'})"
            )
        args = wire.unpack(a.args)
        kwargs = wire.unpack(a.kwargs)
        token = _current.set(ctx)
        try:
            if inspect.iscoroutinefunction(fn):
                call = fn(*args, **kwargs)
            else:
                run = contextvars.copy_context().run
                call = asyncio.get_running_loop().run_in_executor(
                    self._executor, functools.partial(run, fn, *args, **kwargs)
                )
            return await asyncio.wait_for(call, a.timeout) if a.timeout else await call
        finally:
            _current.reset(token)

    def _report(self, result: wire.JobResult) -> None:
        self.unacked[result.job_id] = result
        self._outbox.append(result)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        """One Results frame for everything that finished during this loop turn."""
        self._flush_scheduled = False
        batch, self._outbox = self._outbox, []
        if batch:
            self._send(wire.Results(batch))


async def serve(worker: Worker) -> None:
    """Run a worker until SIGINT/SIGTERM, then drain it."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, worker.stop)
    await worker.run()
