"""The worker agent: runs registered task functions for the scheduler.

Users register tasks with ``from actors import task`` (``actors.worker.tasks``). Async
functions run on the worker's event loop; sync ones in one child process per slot (``pool=
"process"``, the default when the worker names its task modules: a stuck or CPU-bound
handler can be killed and never holds the agent's GIL) or in threads (``pool="thread"``).

This module owns the conversation with the scheduler (hello until welcomed, heartbeats,
the frames it reads) and each job's run from Assign to result.

Leases (``actors.worker.leases``): a job may run only while its lease is valid by the
worker's own clock. An assignment already past that when it is read, or when its handler
is about to start, is dropped (never run, never reported; the heartbeat's ``assign_seq``
lets the scheduler reclaim it). A running handler whose lease lapses is stopped
(self-fencing), and a process child enforces the expiry itself even when this agent is
paused.

Credits: the hello announces the slots (concurrency plus prefetch, ``actors.worker.
prefetch``: jobs held waiting for a slot), and each is given back (``Results.credits``) only
when it can run again: a thread stuck after its timeout keeps its slot until it returns.
Results are batched per loop turn and kept until acknowledged (resent after a reconnect).

Stopping: the first SIGINT/SIGTERM drains (no new work, prefetched jobs given back, finish
the running ones) for at most ``drain_timeout`` seconds; a second one, or the timeout, stops
the handlers at once and says Goodbye while still holding their leases (the scheduler
records those attempts as "worker stopped"); ``abandoned`` lists them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import socket
import time
from collections.abc import Callable, Sequence
from typing import Any

from actors.addresses import parse
from actors.link import Link
from actors.worker import tasks
from actors.worker.executors import Run
from actors.worker.hello import checked_queues
from actors.worker.leases import Leases
from actors.worker.options import declared_limits, job_timeout
from actors.worker.outbox import Outbox, ProgressRelay
from actors.worker.prefetch import Prefetched
from actors.worker.results import failed, fence_reason, outcome, stopped
from actors.worker.runners import Runners
from actors.worker.stop import claims, drain, frame_refused, held_work, leave_old_work, serve
from actors.worker.tasks import REGISTRY, JobContext, bind_error, context, task
from actors.worker.tasks import task_options as task_options
from transport import ClientKeys
from transport import protocol as wire
from transport.errors import BadFrame, TransportError

__all__ = ["REGISTRY", "JobContext", "Worker", "context", "serve", "task", "task_options"]

log = logging.getLogger("corral.worker")

DRAIN_TIMEOUT_S = 30.0  # a drain longer than this is stuck: stop what is left


def default_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class Worker:
    def __init__(
        self,
        address: str | Sequence[str],
        *,
        name: str | None = None,
        concurrency: int = 4,
        prefetch: int = 0,
        queues: tuple[str, ...] = ("default",),
        registry: dict[str, Callable[..., Any]] | None = None,
        pool: str | None = None,
        modules: list[str] | None = None,
        drain_timeout: float = DRAIN_TIMEOUT_S,
        keys: ClientKeys | None = None,
    ) -> None:
        self.name = name or default_name()
        # Hellos until welcomed, and the move to the leader among several schedulers
        # (actors.link); a bad address raises ConfigError here, before anything starts.
        # ``keys``: CURVE (``actors.keys.client_keys``).
        self.link = Link(parse(address), self._hello, log, f"worker {self.name}", keys=keys)
        self.concurrency = concurrency
        self.prefetch = prefetch
        self.slots = concurrency + prefetch  # the leases it may hold
        self.waiting = Prefetched()  # held, not started: no slot free yet
        self._starting = False  # _start_waiting is running (a start may end a job at once)
        self.queues = checked_queues(self.name, self.slots, queues)  # ValueError if refused
        self.registry = REGISTRY if registry is None else registry
        self.modules = modules or []
        # Children import the task modules, so a process pool needs them named.
        self.pool = pool or ("process" if self.modules else "thread")
        self.drain_timeout = drain_timeout
        self.heartbeat_interval = 1.0
        self.leases = Leases()
        self.running: dict[int, Run] = {}  # jobs started and not reported, with their run
        self.executed = 0
        self.fenced = 0  # jobs this worker fenced itself (stopped, result refused): lease lapsed
        self.dropped = 0  # assignments dropped unstarted: their lease had lapsed
        self.abandoned: list[int] = []  # jobs stopped unfinished by a hard stop
        self._stop_reasons: dict[int, str] = {}
        self._timers: dict[int, asyncio.TimerHandle] = {}  # job id -> its timeout's timer
        self._busy: set[int] = set()  # jobs whose slot cannot run another handler yet
        self.outbox = Outbox(self.send)
        self._progress = ProgressRelay(self.send, self.leases.held, self.link.welcomed.is_set)
        self._runners = Runners(self.registry, concurrency, self.pool, self.modules)
        self._stop_requested = asyncio.Event()
        self.abandon = asyncio.Event()
        self._stops = 0
        self._loop: asyncio.AbstractEventLoop | None = None  # run()'s: progress reports

    # ------------------------------------------------------------------ wiring

    @property
    def address(self) -> str:
        """The scheduler talked to now (one of ``link.addresses``, or the leader one named)."""
        return self.link.address

    def send(self, message: wire.Message) -> None:
        self.link.send(wire.encode(message))

    def _hello(self) -> None:
        busy = len(self._busy.difference(self.leases.held, self.outbox.unacked))  # stuck threads
        hello = wire.WorkerHello(
            wire.PROTOCOL_VERSION, self.name, self.slots, list(self.queues),
            sorted(self.registry), claims(self), time.monotonic(), busy,
            self.link.database_id, declared_limits(self.registry), self.prefetch,
        )  # fmt: skip
        self.send(hello)

    async def run(self) -> None:
        """Serve until ``stop()``; then drain (see the module docstring) and say goodbye."""
        self._loop = asyncio.get_running_loop()
        self.link.open()
        await self._runners.prepare()  # before the hello: the first job must not wait
        loop = self._loop
        loops = [
            loop.create_task(self._read_loop(), name="worker.read"),
            loop.create_task(self.link.seek(), name="worker.hello"),
            loop.create_task(self._heartbeat_loop(), name="worker.heartbeat"),
            loop.create_task(self._fence_loop(), name="worker.fence"),
            loop.create_task(self.link.watch(self._silence), name="worker.watch"),
        ]
        try:
            await self._stop_requested.wait()
            await drain(self)
        finally:
            for t in loops:
                t.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
            self._runners.close()
            await self.link.close()

    def stop(self) -> None:
        """First call: drain. Second call: stop at once (handlers stopped, leases left)."""
        self._stops += 1
        if self._stops == 1:
            self._stop_requested.set()
        else:
            self.abandon.set()

    async def _read_loop(self) -> None:
        link = self.link
        while True:
            frames = await link.batch()
            epoch = link.epoch
            for frame in frames:
                if link.epoch != epoch:
                    break  # we moved to another scheduler: the rest is from the old one
                try:
                    message = wire.decode_reply(frame)
                except BadFrame as exc:
                    log.error("unreadable frame from scheduler: %s", exc)
                    continue
                self._on_message(message)

    def _on_message(self, message: wire.FromScheduler) -> None:
        match message:
            case wire.Assign():
                self._assign(message)
            case wire.ResultsAck(job_ids=acked, refused=refused):
                self.outbox.acked(acked)
                self.outbox.acked(refused)
                for job_id in refused:
                    log.warning("scheduler refused our result for job %d (stale lease)", job_id)
            case wire.HeartbeatAck(sent_at=sent_at):
                self._renewed(sent_at)
            case wire.StopJob(job_id=job_id, token=token, reason=reason):
                held = self.leases.held.get(job_id)
                if held is not None and held.token == token:
                    self.stop_job(job_id, reason)
            case wire.Welcome(heartbeat_interval=interval, lease=lease, instance=instance):
                verdict = self.link.check_database(message.database_id, message.database)
                if verdict == "passed":
                    return
                if verdict == "changed" and held_work(self):
                    leave_old_work(self, f"{self.address} now serves {message.database}")
                    return
                self.heartbeat_interval = interval
                self.leases.welcome(lease, instance)
                hello_at = self.link.welcome(message.term)
                if hello_at is not None:  # a new episode: we were not welcomed
                    self._renewed(hello_at)
                    log.info("worker %s connected to %s", self.name, self.address)
                    self.outbox.resend()  # results a restarted scheduler may not have
                    self._heartbeat()  # renew at once: held leases may be near expiry
            case wire.ErrorReply(code="hello_first"):
                # Once per episode: every frame sent meanwhile earns one of these.
                if self.link.welcomed.is_set():
                    log.warning("the scheduler does not know us (restarted?); saying hello")
                    self.link.unwelcome()
            case wire.NotLeader(leader=leader, term=term, database_id=database_id):
                self.link.not_leader(leader, term, database_id)
            case wire.ErrorReply(code="other_database", message=text):
                if self.link.refused_database(text) == "passed":
                    return  # another of our addresses serves our database
                if held_work(self):
                    leave_old_work(self, text)
                    return
                log.warning("worker %s: %s; joining it (held nothing)", self.name, text)
                with contextlib.suppress(TransportError):
                    self._hello()
            case wire.ErrorReply(code=code, message=text):
                frame_refused(self, code, text)
            case _:
                log.warning("ignoring unexpected %s", type(message).__name__)

    def _renewed(self, sent_at: float) -> None:
        self.leases.renewed(sent_at)
        self._runners.renewed()

    def _silence(self) -> float:
        """With several schedulers: unanswered this long, the one we talk to is gone. Two
        heartbeats (a live one acknowledges each in milliseconds), and at most half a
        lease, so at least the other half is left to reach the new leader before our
        leases lapse and we stop our own jobs. Leaving a leader that was only slow costs
        a round trip: a standby names it, and our hello from the new connection claims our
        leases back (``JobTable.adopt``)."""
        return min(2 * self.heartbeat_interval, self.leases.lease / 2)

    async def _heartbeat_loop(self) -> None:
        while True:
            await self.link.welcomed.wait()  # the interval and lease come with the Welcome
            self._heartbeat()
            await asyncio.sleep(self.heartbeat_interval)

    def _heartbeat(self) -> None:
        self._fence()  # a lapsed lease must not be listed, so renewed, before it is stopped
        leases = self.leases
        self.link.probing()  # acknowledged at once by a live scheduler
        waiting = self.waiting.ids()  # their timeout backstops count from now
        self.send(wire.Heartbeat(leases.listed(), time.monotonic(), leases.assign_seq, waiting))

    # ---------------------------------------------------------- self-fencing

    def _fence(self) -> None:
        """Stop every held job whose lease has lapsed by our clock (self-fencing)."""
        for job_id in self.leases.lapsed(self._stop_reasons):
            if self.waiting.take(job_id) is not None:  # never started: dropped, not stopped
                self.dropped += 1
                self._forget(job_id)
                self.outbox.slot_freed()
                continue
            self.fenced += 1
            self.stop_job(job_id, fence_reason(self.leases.lease))

    async def _fence_loop(self) -> None:
        while True:
            self._fence()
            wait = self.leases.next_lapse(self._stop_reasons)
            await asyncio.sleep(min(max(wait, 0.005), self.heartbeat_interval))

    def stop_job(self, job_id: int, reason: str) -> None:
        held = self.leases.held.get(job_id)
        if held is None or job_id in self._stop_reasons:
            return
        if self.waiting.take(job_id) is not None:  # never started: it ends here, unrun
            return self._finish(held, stopped(held, reason), None)
        self._stop_reasons[job_id] = reason
        self._runners.stop(job_id, held.task)

    # ---------------------------------------------------------------- running

    def _assign(self, message: wire.Assign) -> None:
        self._fence()
        if not self.leases.first_reading(message):
            return
        if self.leases.read_too_late(message):  # we were paused: they may run elsewhere
            self.dropped += len(message.assignments)
            self.outbox.slot_freed(len(message.assignments))  # their slots were never taken
            return
        later: list[wire.Assignment] = []
        for a in message.assignments:
            if a.job_id in self.leases.held:  # a duplicate, or a new lease while the old runs:
                log.warning("ignoring job %d token %d: we still run it", a.job_id, a.token)
                continue  # not listed, so reclaimed; the old lease is stopped by StopJob
            self.leases.take(a, message.lease_basis)
            if self.waiting or len(self._busy) >= self.concurrency:
                if len(self._busy) + len(self.waiting) >= self.slots:
                    log.error("scheduler sent job %d beyond our %d slots", a.job_id, self.slots)
                self.waiting.add(a)  # its turn comes when a slot frees (_start_waiting)
                continue
            self._busy.add(a.job_id)
            if self._runners.is_async(a.task):
                self._start(a)  # a task on this loop: cheap to create
            else:  # a thread or a child (maybe forked now): after this batch of frames
                later.append(a)  # (acks first), with one callback for the frame's jobs
        if later:
            asyncio.get_running_loop().call_soon(self._start_later, later)

    def _start_later(self, assignments: list[wire.Assignment]) -> None:
        for a in assignments:
            if self.leases.held.get(a.job_id) is not a or self.outbox.closed:
                continue  # given up meanwhile (a hard stop, another database)
            self._start(a)
            if a.job_id in self._stop_reasons and a.job_id in self.running:
                self._runners.stop(a.job_id, a.task)  # stopped before it was launched

    # A job's run is driven by callbacks on its Run's futures (partials: a lambda's cells are
    # made on every call of its method): _start (checks, launch) -> _started (the timeout) ->
    # _ended (the report); _timed_out reports a handler still running at its timeout. Each
    # job maps to its Run in ``running``: a late callback of an earlier run changes nothing.

    def _start(self, a: wire.Assignment) -> None:
        fn = self.registry.get(a.task)
        if fn is None:
            known = ", ".join(sorted(self.registry)) or "none"
            text = f"task {a.task!r} is not registered on worker {self.name} (it has: {known})"
            return self._finish(a, failed(a, text, retry=False), None)
        try:
            args, kwargs = wire.unpack(a.args), wire.unpack(a.kwargs)
            error = bind_error(a.task, fn, args, kwargs)
            if error is not None:
                return self._finish(a, failed(a, error, retry=False), None)
            run = self._launch(a, fn, args, kwargs)
        except Exception as exc:  # never lose the read loop to one job
            log.exception("job %d could not be started", a.job_id)
            return self._finish(a, failed(a, f"could not start: {exc!r}"), None)
        self.running[a.job_id] = run
        if run.started.done():  # the usual case for async handlers: no loop turn to wait
            self._started(a, run)
        else:
            run.started.add_done_callback(functools.partial(self._started, a, run))

    def _started(self, a: wire.Assignment, run: Run, _future: object = None) -> None:
        if self.running.get(a.job_id) is not run:
            return
        if run.started.exception() is not None:  # LeaseLapsed: it never began
            self.dropped += 1
            log.warning("dropped job %d: its lease lapsed before its handler could start", a.job_id)
            self._forget(a.job_id)  # never ran, never reported: the scheduler reclaims it
            run.freed.add_done_callback(functools.partial(self._slot_freed, a.job_id))
            return
        timeout = job_timeout(a.timeout, a.task)
        if timeout:
            left = max(0.0, timeout - (time.monotonic() - run.started.result()))
            loop = asyncio.get_running_loop()
            timer = loop.call_later(left, self._timed_out, a, run, timeout)
            self._timers[a.job_id] = timer
        run.done.add_done_callback(functools.partial(self._ended, a, run))

    def _timed_out(self, a: wire.Assignment, run: Run, timeout: float) -> None:
        self._timers.pop(a.job_id, None)
        if self.running.get(a.job_id) is not run or run.done.done():
            return  # finished meanwhile: _ended reports it
        if self.outbox.closed or a.job_id in self._stop_reasons:
            return  # being stopped already: reported once its handler has stopped
        text = f"timed out after {timeout:g}s"
        self.stop_job(a.job_id, text)
        self._finish(a, stopped(a, text), run)

    def _ended(self, a: wire.Assignment, run: Run, _done: object = None) -> None:
        """The handler has ended (by itself or stopped): its report, if it is still ours."""
        if self.running.get(a.job_id) is not run or self.outbox.closed:
            return  # reported already (timed out), or a hard stop: no (fake) result
        reason = self._stop_reasons.get(a.job_id)
        if reason is None and time.monotonic() > self.leases.expiry(a.job_id):
            # It ended after its lease lapsed, before our fence loop saw the lapse (a pool
            # child's own watchdog wins that race when this loop was stalled): the same
            # self-fencing, logged and counted as one. Never vouch for its result.
            self._fence()
            reason = self._stop_reasons[a.job_id]
        if reason is not None:
            # Its result ends the attempt and frees its concurrency key's slot: only now
            # that the handler has stopped (a thread stops at its next bytecode). Until
            # then its lease stayed listed, so the scheduler held the slot or reclaimed.
            self.stop_job(a.job_id, reason)
            result = stopped(a, reason)
        else:
            options = task_options(a.task)
            result = outcome(a, options, run.done, self._runners.in_child(a.task))
        self._finish(a, result, run)

    def _launch(self, a: wire.Assignment, fn: Callable[..., Any], args: Any, kwargs: Any) -> Run:
        ctx = tasks.PendingContext(self._context_of, a)  # built if its handler asks for it
        deadline = functools.partial(self.leases.expiry, a.job_id)
        return self._runners.start(a.job_id, a.task, fn, args, kwargs, ctx, deadline, a.timeout)

    def _context_of(self, a: wire.Assignment) -> JobContext:
        """The context job ``a``'s handler sees; built in the handler's own thread, maybe."""
        assert self._loop is not None  # run() sets it before any job can start
        return tasks.job_context(a, self.name, self._loop, self._progress.record)

    def _forget(self, job_id: int) -> None:
        self.running.pop(job_id, None)
        self.leases.forget(job_id)
        self._stop_reasons.pop(job_id, None)
        timer = self._timers.pop(job_id, None)
        if timer is not None:
            timer.cancel()

    def _finish(self, a: wire.Assignment, result: wire.JobResult, run: Run | None) -> None:
        self._forget(a.job_id)
        self.executed += 1
        freed = run is None or run.freed.done()
        if not freed:  # its handler still runs (stuck after a stop): the slot comes back later
            assert run is not None
            run.freed.add_done_callback(functools.partial(self._slot_freed, a.job_id))
        self.outbox.report(result, freed)
        if freed:
            self._busy.discard(a.job_id)
            if self.waiting:
                self._start_waiting()

    def _slot_freed(self, job_id: int, _freed: object = None) -> None:
        self._busy.discard(job_id)
        self.outbox.slot_freed(job_id=job_id)
        if self.waiting:
            self._start_waiting()

    def _start_waiting(self) -> None:
        """Start prefetched jobs while slots are free (oldest first)."""
        if self._starting or self.outbox.closed:
            return  # the outer call starts the rest; a hard stop starts nothing
        self._starting = True
        try:
            while self.waiting and len(self._busy) < self.concurrency:
                a = self.waiting.next()
                self._busy.add(a.job_id)
                self._start(a)
        finally:
            self._starting = False
