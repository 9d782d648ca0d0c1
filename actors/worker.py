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
import gc
import inspect
import logging
import os
import signal
import socket
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar, overload

from actors.errors import TaskNotFound
from actors.executors import HandlerError, JobStopped, ProcessRunner, ThreadRunner
from transport import ClientTransport, connect
from transport import protocol as wire
from transport.errors import BadFrame

log = logging.getLogger("corral.worker")

F = TypeVar("F", bound=Callable[..., Any])

REGISTRY: dict[str, Callable[..., Any]] = {}

# A worker that hears no Welcome re-sends its hello this often, so it finds a
# scheduler that starts (or restarts) after it.
HELLO_RETRY_S = 1.0
# Progress reports are coalesced per job and sent at most this often: live views
# refresh about once a second, so four updates a second look smooth and cost little.
PROGRESS_EVERY_S = 0.25
# Say so (once) when no scheduler has answered for this many hello retries.
UNANSWERED_WARNING = 5


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
    # Results of the jobs this one depends on, by job id, and by step name for the
    # steps of the same workflow. All of them SUCCEEDED (or this job would not run).
    parents: dict[int, Any] = field(default_factory=dict)
    steps: dict[str, Any] = field(default_factory=dict)
    workflow_id: int | None = None
    step: str | None = None
    reporter: Callable[[float, str], None] | None = field(default=None, repr=False, compare=False)

    def progress(self, fraction: float, message: str = "") -> None:
        """Report how far the job has got (0.0 to 1.0) and what it is doing.

        Cheap to call often: the worker keeps only the latest report per job and sends
        at most four a second, so a chatty handler cannot flood the scheduler."""
        if self.reporter is not None:
            self.reporter(min(1.0, max(0.0, float(fraction))), str(message)[:1024])


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
        pool: str = "thread",
        modules: list[str] | None = None,
    ) -> None:
        self.address = address
        self.name = name or default_name()
        self.concurrency = concurrency
        self.queues = queues
        self.registry = REGISTRY if registry is None else registry
        self.pool = pool
        self.modules = modules or []
        self.heartbeat_interval = 1.0
        self.lease = 5.0
        self.running: dict[int, asyncio.Task[None]] = {}
        self.held: dict[int, wire.Assignment] = {}  # leases we hold, by job id
        self.unacked: dict[int, wire.JobResult] = {}
        self.executed = 0
        self.fenced = 0  # handlers this worker stopped itself because its lease lapsed
        self._stop_reasons: dict[int, str] = {}
        self._async_tasks: dict[str, bool] = {}
        self._progress: dict[int, tuple[int, int, float, str]] = {}  # latest per job
        self._progress_timer: asyncio.TimerHandle | None = None
        self._renewed_at = 0.0  # send time (our clock) of the last heartbeat the scheduler acked
        self._outbox: list[wire.JobResult] = []
        self._flush_scheduled = False
        self._transport: ClientTransport | None = None
        self._threads: ThreadRunner | None = None
        self._processes: ProcessRunner | None = None
        self._welcomed = asyncio.Event()
        self._stop_requested = asyncio.Event()
        self._hello_sent_at = 0.0
        self._stopping = False

    # ------------------------------------------------------------------ wiring

    def _leases(self) -> list[tuple[int, int]]:
        return [(job_id, a.token) for job_id, a in self.held.items()]

    def _claims(self) -> list[tuple[int, int]]:
        """What a (re)connecting hello claims: jobs still running, and finished jobs whose
        results the scheduler has not acknowledged yet (they are resent right after)."""
        unacked = [(r.job_id, r.token) for r in self.unacked.values()]
        return self._leases() + unacked

    def _send(self, message: wire.Message) -> None:
        assert self._transport is not None
        self._transport.send(wire.encode(message))

    def _hello(self) -> None:
        self._welcomed.clear()
        self._hello_sent_at = time.monotonic()
        hello = wire.WorkerHello(
            wire.PROTOCOL_VERSION,
            self.name,
            self.concurrency,
            list(self.queues),
            sorted(self.registry),
            self._claims(),
        )
        self._send(hello)

    async def run(self) -> None:
        """Serve until ``stop()``; then finish held jobs, flush results, say goodbye."""
        self._transport = connect(self.address)
        self._threads = ThreadRunner(self.concurrency)
        if self.pool == "process":
            self._processes = ProcessRunner(self.concurrency, self.modules)
        loop = asyncio.get_running_loop()
        loops = [
            loop.create_task(self._read_loop(), name="worker.read"),
            loop.create_task(self._heartbeat_loop(), name="worker.heartbeat"),
            loop.create_task(self._fence_loop(), name="worker.fence"),
        ]
        unanswered = 0
        try:
            self._hello()
            while not self._stopping:
                try:
                    await asyncio.wait_for(self._welcomed.wait(), HELLO_RETRY_S)
                except TimeoutError:
                    unanswered += 1
                    if unanswered == UNANSWERED_WARNING:
                        log.warning(
                            "no scheduler has answered at %s yet; still trying every %gs",
                            self.address,
                            HELLO_RETRY_S,
                        )
                    self._hello()
                    continue
                await self._stop_requested.wait()
            await self._drain()
        finally:
            for task in loops:
                task.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
            self._threads.close()
            if self._processes is not None:
                self._processes.close()
            await self._transport.close()

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
            case wire.HeartbeatAck(sent_at=sent_at):
                self._renewed_at = max(self._renewed_at, sent_at)
            case wire.StopJob(job_id=job_id, token=token, reason=reason):
                held = self.held.get(job_id)
                if held is not None and held.token == token:
                    self._stop_job(job_id, reason)
            case wire.Welcome(heartbeat_interval=interval, lease=lease):
                self.heartbeat_interval = interval
                self.lease = lease
                self._renewed_at = max(self._renewed_at, self._hello_sent_at)
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
            await self._welcomed.wait()  # the interval and lease come with the Welcome
            self._send(wire.Heartbeat(self._leases(), time.monotonic()))
            await asyncio.sleep(self.heartbeat_interval)

    # ---------------------------------------------------------- self-fencing

    def _lease_lapsed(self) -> bool:
        return time.monotonic() - self._renewed_at > self.lease

    async def _fence_loop(self) -> None:
        """Stop every held job the moment our leases lapse (no acked heartbeat for a lease).

        The scheduler reclaims only after lease + grace measured from when it last heard
        us, which is later than when we sent what it acknowledged, so we stop first."""
        while True:
            if self.running and self._lease_lapsed():
                self.fenced += len(self.running)
                log.error(
                    "no heartbeat acknowledged for %.1fs: stopping %d job(s) (self-fencing)",
                    time.monotonic() - self._renewed_at,
                    len(self.running),
                )
                for job_id in list(self.running):
                    self._stop_job(job_id, f"self-fenced: lease of {self.lease:g}s not renewed")
            wait = self._renewed_at + self.lease - time.monotonic()
            await asyncio.sleep(min(max(wait, 0.01), self.heartbeat_interval))

    def _stop_job(self, job_id: int, reason: str) -> None:
        task = self.running.get(job_id)
        if task is None or job_id in self._stop_reasons:
            return
        self._stop_reasons[job_id] = reason
        if self._processes is not None:
            self._processes.stop(job_id)
        elif self._is_async(self.held[job_id].task):
            task.cancel()
        elif self._threads is not None:
            self._threads.stop(job_id)

    # ---------------------------------------------------------------- running

    def _start(self, assignment: wire.Assignment) -> None:
        job_id = assignment.job_id
        if len(self.running) >= self.concurrency:
            log.error("scheduler sent job %d beyond our %d slots", job_id, self.concurrency)
        self.held[job_id] = assignment
        self.running[job_id] = asyncio.get_running_loop().create_task(
            self._execute(assignment), name=f"job-{job_id}"
        )

    async def _execute(self, a: wire.Assignment) -> None:
        parents = {p.job_id: wire.unpack(p.result) for p in a.parents}
        steps = {p.step: parents[p.job_id] for p in a.parents if p.step is not None}
        loop = asyncio.get_running_loop()

        def report(fraction: float, message: str) -> None:  # any thread, or a child's relay
            loop.call_soon_threadsafe(self._record_progress, a.job_id, a.token, fraction, message)

        ctx = JobContext(
            a.job_id,
            a.token,
            a.attempt,
            a.idempotency_key,
            self.name,
            parents,
            steps,
            a.workflow_id,
            a.step,
            report,
        )
        try:
            value = await self._call(a, ctx)
            if a.job_id in self._stop_reasons:
                raise JobStopped(self._stop_reasons[a.job_id])
            if self._lease_lapsed():  # never vouch for a result we no longer hold a lease on
                raise JobStopped(f"self-fenced: lease of {self.lease:g}s not renewed")
            result = wire.JobResult(a.job_id, a.token, True, wire.pack(value))
        except (JobStopped, asyncio.CancelledError) as exc:
            reason = self._stop_reasons.get(a.job_id)
            if reason is None and isinstance(exc, asyncio.CancelledError):
                raise  # the worker itself is shutting down
            result = wire.JobResult(a.job_id, a.token, False, error=reason or str(exc))
        except TimeoutError:
            error = f"timed out after {a.timeout:g}s"
            result = wire.JobResult(a.job_id, a.token, False, error=error)
        except HandlerError as exc:
            result = wire.JobResult(a.job_id, a.token, False, error=str(exc))
        except Exception:
            result = wire.JobResult(a.job_id, a.token, False, error=traceback.format_exc())
        finally:
            self.running.pop(a.job_id, None)
            self.held.pop(a.job_id, None)
            self._stop_reasons.pop(a.job_id, None)
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
            if self._processes is None and self._is_async(a.task):
                call = fn(*args, **kwargs)
            elif self._processes is not None:
                call = self._processes.run(a.job_id, a.task, args, kwargs, ctx)
            else:
                assert self._threads is not None
                call = self._threads.run(a.job_id, fn, args, kwargs)
            if not a.timeout:
                return await call
            try:
                return await asyncio.wait_for(call, a.timeout)
            except TimeoutError:
                if self._threads is not None and self._processes is None:
                    self._threads.stop(a.job_id)  # the thread outlives wait_for otherwise
                raise
        finally:
            _current.reset(token)

    def _is_async(self, task_name: str) -> bool:
        """Whether a task runs on the loop (cached: inspect costs a few µs per call)."""
        known = self._async_tasks.get(task_name)
        if known is None:
            fn = self.registry.get(task_name)
            known = self._async_tasks[task_name] = inspect.iscoroutinefunction(fn)
        return known

    def _record_progress(self, job_id: int, token: int, fraction: float, message: str) -> None:
        held = self.held.get(job_id)
        if held is None or held.token != token:
            return  # finished or stopped meanwhile: a late report says nothing new
        self._progress[job_id] = (job_id, token, fraction, message)
        if self._progress_timer is None:
            self._progress_timer = asyncio.get_running_loop().call_later(
                PROGRESS_EVERY_S, self._flush_progress
            )

    def _flush_progress(self) -> None:
        self._progress_timer = None
        updates = [u for u in self._progress.values() if u[0] in self.held]
        self._progress.clear()
        if updates and self._welcomed.is_set():
            self._send(wire.Progress(updates))

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
    gc.freeze()  # imports and task modules live for good: keep them out of GC scans
    await worker.run()
