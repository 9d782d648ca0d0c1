"""The client SDK: submit jobs, wait for results, read status. Async (``AsyncClient``) and
sync (``Client``, which runs an ``AsyncClient`` on a private event-loop thread).

Every request carries a request id; replies are matched to it. Submissions are
acknowledged only after the scheduler committed them. If the scheduler restarts
(its Welcome carries a new instance id) the client re-registers what it still
waits for, so ``wait`` survives a scheduler crash.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import AsyncGenerator, Coroutine, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from actors.config import env_address
from actors.errors import JobFailed, RequestRefused, SchedulerUnreachable, WaitTimeout
from transport import ClientTransport, connect
from transport import protocol as wire
from transport.errors import BadFrame

T = TypeVar("T")

# How often a client with outstanding waits checks that the scheduler it
# registered them with is still the same process (a tiny hello round trip).
RECHECK_S = 2.0
# Jobs per Submit / Wait frame: keeps frames far below the 8 MiB limit.
SUBMIT_CHUNK = 5_000
WAIT_CHUNK = 50_000


def job_spec(
    task: str,
    args: Sequence[Any] = (),
    kwargs: dict[str, Any] | None = None,
    *,
    priority: int = 0,
    queue: str = "default",
    depends_on: Iterable[int] = (),
    max_retries: int = 3,
    idempotency_key: str | None = None,
    timeout: float | None = None,
    backoff: wire.Backoff | tuple[float, float, float] | None = None,
) -> wire.JobSpec:
    """Build one job description for ``submit_many``.

    ``backoff`` is ``(base, factor, cap)`` in seconds for this job's retries; by default
    the scheduler's (1 s, x2, 300 s)."""
    if backoff is not None and not isinstance(backoff, wire.Backoff):
        backoff = wire.Backoff(*backoff)
    return wire.JobSpec(
        task,
        wire.pack(list(args)),
        wire.pack(kwargs or {}),
        priority,
        queue,
        list(depends_on),
        max_retries,
        idempotency_key,
        timeout,
        backoff,
    )


@dataclass
class _Waiting:
    remaining: set[int]
    outcomes: dict[int, wire.JobOutcome] = field(default_factory=dict)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    error: Exception | None = None
    # False while the job ids are still unknown (a wait riding on a Submit): outcomes
    # may be recorded, but the wait cannot be complete before the Submitted reply.
    armed: bool = True
    job_ids: list[int] = field(default_factory=list)  # the Submitted reply's, once armed

    def add(self, outcomes: Iterable[wire.JobOutcome]) -> None:
        for outcome in outcomes:
            self.outcomes[outcome.job_id] = outcome
            self.remaining.discard(outcome.job_id)
        if self.armed and not self.remaining:
            self.done.set()

    def arm(self, job_ids: list[int]) -> None:
        self.job_ids = job_ids
        self.remaining = set(job_ids) - self.outcomes.keys()
        self.armed = True
        self.add(())


class AsyncClient:
    def __init__(
        self,
        address: str | None = None,
        *,
        connect_timeout: float = 5.0,
        request_timeout: float = 60.0,
    ) -> None:
        self.address = address or env_address()
        self.connect_timeout = connect_timeout
        self.request_timeout = request_timeout
        self._transport: ClientTransport | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._requests: dict[int, wire.Message] = {}
        self._submit_waits: dict[int, int] = {}  # Submit request id -> its Wait's request id
        self._waits: dict[int, _Waiting] = {}
        self._watches: dict[int, tuple[int | None, asyncio.Queue[wire.Events]]] = {}
        self._welcome: asyncio.Future[wire.Welcome] | None = None
        self._instance = ""
        self._tasks: list[asyncio.Task[None]] = []

    async def connect(self) -> AsyncClient:
        self._transport = connect(self.address)
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._read_loop()), loop.create_task(self._recheck_loop())]
        welcome = await self._hello(self.connect_timeout)
        self._instance = welcome.instance
        return self

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._transport is not None:
            await self._transport.close()
            self._transport = None

    async def __aenter__(self) -> AsyncClient:
        return await self.connect()

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    # --------------------------------------------------------------- requests

    async def submit(
        self,
        task: str,
        args: Sequence[Any] = (),
        kwargs: dict[str, Any] | None = None,
        **options: Any,
    ) -> int:
        """Submit one job; returns its id once the scheduler has committed it."""
        return (await self.submit_many([job_spec(task, args, kwargs, **options)]))[0]

    async def submit_many(self, specs: Sequence[wire.JobSpec]) -> list[int]:
        """Submit many jobs in few frames; ids in the same order. Each chunk is all-or-nothing."""
        ids: list[int] = []
        for start in range(0, len(specs), SUBMIT_CHUNK):
            chunk = list(specs[start : start + SUBMIT_CHUNK])
            reply = await self._request(lambda rid, c=chunk: wire.Submit(rid, c))
            ids += reply.job_ids
        return ids

    async def submit_and_wait(
        self, specs: Sequence[wire.JobSpec], timeout: float | None = None
    ) -> list[wire.JobOutcome]:
        """Submit jobs and wait until every one has ended, in one round trip per chunk:
        each Submit carries its own wait. Outcomes in submission order (one per job, so a
        repeated idempotency key repeats its job's outcome). Raises WaitTimeout when
        ``timeout`` passes (the jobs go on), RequestRefused for a refused chunk (nothing
        of it was created), SchedulerUnreachable if a chunk is not acknowledged within
        ``request_timeout``."""
        outcomes: dict[int, wire.JobOutcome] = {}
        deadline = None if timeout is None else time.monotonic() + timeout
        order: list[int] = []
        for start in range(0, len(specs), SUBMIT_CHUNK):
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            job_ids, done = await self._submit_waiting(specs[start : start + SUBMIT_CHUNK], left)
            order += job_ids
            outcomes.update(done)
        return [outcomes[job_id] for job_id in order]

    async def _submit_waiting(
        self, chunk: Sequence[wire.JobSpec], timeout: float | None
    ) -> tuple[list[int], dict[int, wire.JobOutcome]]:
        """One Submit carrying its Wait. This coroutine sleeps until the outcomes (or an
        error) are in: the read loop records the Submitted reply itself, so the caller is
        not woken at the moment its job is starting on a worker."""
        rid, wait_rid = next(self._ids), next(self._ids)
        message = wire.Submit(rid, list(chunk), wait_rid)
        # Sent before the bookkeeping below: no reply is read before this coroutine
        # yields, and the frame leaves a few microseconds sooner.
        self._send(message)
        waiting = _Waiting(set(), armed=False)
        self._waits[wait_rid] = waiting
        self._requests[rid] = message  # resent if the scheduler asks for a hello first
        self._submit_waits[rid] = wait_rid
        unacknowledged = asyncio.get_running_loop().call_later(
            self.request_timeout, self._no_ack, waiting
        )
        try:
            try:
                await asyncio.wait_for(waiting.done.wait(), timeout)
            except TimeoutError:
                raise WaitTimeout(sorted(waiting.remaining), timeout or 0.0) from None
            if waiting.error is not None:
                raise waiting.error
            return waiting.job_ids, waiting.outcomes
        finally:
            unacknowledged.cancel()
            self._waits.pop(wait_rid, None)
            self._requests.pop(rid, None)
            self._submit_waits.pop(rid, None)

    def _no_ack(self, waiting: _Waiting) -> None:
        if not waiting.armed:
            waiting.error = SchedulerUnreachable(self.address, self.request_timeout)
            waiting.done.set()

    async def run(
        self,
        task: str,
        args: Sequence[Any] = (),
        kwargs: dict[str, Any] | None = None,
        *,
        timeout: float | None = None,
        **options: Any,
    ) -> Any:
        """Submit one job and return its result once it has run (one round trip, not two).

        Raises JobFailed if it ended any other way than SUCCEEDED, WaitTimeout after
        ``timeout`` seconds (the job itself goes on)."""
        [outcome] = await self.submit_and_wait([job_spec(task, args, kwargs, **options)], timeout)
        if outcome.status != "SUCCEEDED":
            raise JobFailed(outcome.job_id, outcome.status, outcome.error)
        return wire.unpack(outcome.result)

    async def submit_workflow(
        self,
        steps: dict[str, tuple[wire.JobSpec, Sequence[str]]] | Sequence[wire.StepSpec],
        name: str = "",
        idempotency_key: str | None = None,
    ) -> tuple[int, dict[str, int]]:
        """Submit a DAG of named steps atomically: all are created or none.

        ``steps`` maps each step name to ``(job_spec(...), [names of steps it runs after])``
        (or is a list of ``wire.StepSpec``). Returns the workflow id and each step's job id.
        A cycle, a step after itself or after an unknown step, or an unknown ``depends_on``
        job id raises RequestRefused and creates nothing."""
        if isinstance(steps, dict):
            specs = [wire.StepSpec(n, spec, list(after)) for n, (spec, after) in steps.items()]
        else:
            specs = list(steps)
        reply = await self._request(
            lambda rid: wire.SubmitWorkflow(rid, name, specs, idempotency_key)
        )
        return reply.workflow_id, reply.step_ids

    async def workflow(self, workflow_id: int) -> wire.WorkflowView | None:
        """A workflow's steps in topological order, each with its job's state."""
        reply = await self._request(lambda rid: wire.GetWorkflow(rid, workflow_id))
        return reply.workflow  # type: ignore[no-any-return]

    async def watch(self, job_id: int | None = None) -> AsyncGenerator[wire.Event, None]:
        """Stream committed events: every job transition, worker health change and progress
        report (or only ``job_id``'s), in order, until the caller stops iterating.

        If this client falls behind, the scheduler drops the oldest events rather than slow
        down; the stream then yields an Event of kind ``"dropped"`` whose ``token`` is how
        many were lost."""
        rid = next(self._ids)
        frames: asyncio.Queue[wire.Events] = asyncio.Queue()
        self._watches[rid] = (job_id, frames)
        self._send(wire.Subscribe(rid, job_id))
        try:
            while True:
                frame = await frames.get()
                self._send(wire.EventsAck(rid))
                if frame.dropped:
                    yield wire.Event(
                        0,
                        time.time(),
                        "dropped",
                        token=frame.dropped,
                        message=f"{frame.dropped} event(s) dropped",
                    )
                for event in frame.events:
                    yield event
        finally:
            self._watches.pop(rid, None)
            if self._transport is not None:
                self._send(wire.Unsubscribe(rid))

    async def status(self) -> wire.StatusView:
        reply = await self._request(lambda rid: wire.GetStatus(rid))
        return reply.status  # type: ignore[no-any-return]

    async def job(self, job_id: int) -> wire.JobView | None:
        reply = await self._request(lambda rid: wire.GetJob(rid, job_id))
        return reply.job  # type: ignore[no-any-return]

    async def cancel(self, job_ids: Iterable[int]) -> dict[int, str]:
        """Cancel jobs: a pending one never runs, a running one is told to stop.
        Returns each job's status afterwards (``NOT_FOUND`` for unknown ids)."""
        ids = list(job_ids)
        reply = await self._request(lambda rid: wire.CancelJobs(rid, ids))
        return dict(reply.statuses)

    async def requeue(
        self, job_ids: Iterable[int] = (), *, all_failed: bool = False
    ) -> wire.RequeueReply:
        """Re-queue dead-lettered (FAILED) jobs with a fresh allowance of retries."""
        ids = list(job_ids)
        reply: wire.RequeueReply = await self._request(
            lambda rid: wire.Requeue(rid, ids, all_failed)
        )
        return reply

    async def jobs(
        self, status: str | None = None, queue: str | None = None, limit: int = 100
    ) -> list[wire.JobView]:
        """Jobs, newest first, optionally only those in ``status`` and/or ``queue``."""
        reply = await self._request(lambda rid: wire.ListJobs(rid, status, queue, limit))
        return reply.jobs  # type: ignore[no-any-return]

    async def wait(
        self, job_ids: Iterable[int], timeout: float | None = None
    ) -> dict[int, wire.JobOutcome]:
        """Wait until every job has ended; outcomes by job id. Raises WaitTimeout."""
        ids = list(dict.fromkeys(job_ids))
        waits: list[tuple[int, _Waiting]] = []
        try:
            for start in range(0, len(ids), WAIT_CHUNK):
                chunk = ids[start : start + WAIT_CHUNK]
                rid = next(self._ids)
                waiting = _Waiting(set(chunk))
                self._waits[rid] = waiting
                waits.append((rid, waiting))
                self._send(wire.Wait(rid, chunk))
            try:
                await asyncio.wait_for(asyncio.gather(*(w.done.wait() for _, w in waits)), timeout)
            except TimeoutError:
                left = sorted(i for _, w in waits for i in w.remaining)
                raise WaitTimeout(left, timeout or 0.0) from None
            outcomes: dict[int, wire.JobOutcome] = {}
            for _, waiting in waits:
                if waiting.error is not None:
                    raise waiting.error
                outcomes.update(waiting.outcomes)
            return outcomes
        finally:
            for rid, _ in waits:
                self._waits.pop(rid, None)

    async def result(self, job_id: int, timeout: float | None = None) -> Any:
        """The job's return value; raises JobFailed if it ended any other way than SUCCEEDED."""
        outcome = (await self.wait([job_id], timeout))[job_id]
        if outcome.status != "SUCCEEDED":
            raise JobFailed(job_id, outcome.status, outcome.error)
        return wire.unpack(outcome.result)

    # ---------------------------------------------------------------- plumbing

    def _send(self, message: wire.Message) -> None:
        if self._transport is None:
            raise RuntimeError("client is not connected; use `async with AsyncClient(...)`")
        self._transport.send(wire.encode(message))

    async def _hello(self, timeout: float) -> wire.Welcome:
        self._welcome = asyncio.get_running_loop().create_future()
        self._send(wire.ClientHello(wire.PROTOCOL_VERSION))
        try:
            return await asyncio.wait_for(asyncio.shield(self._welcome), timeout)
        except TimeoutError:
            raise SchedulerUnreachable(self.address, timeout) from None

    async def _request(self, build: Any) -> Any:
        rid = next(self._ids)
        message = build(rid)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[rid] = future
        self._requests[rid] = message
        try:
            self._send(message)
            return await asyncio.wait_for(future, self.request_timeout)
        except TimeoutError:
            raise SchedulerUnreachable(self.address, self.request_timeout) from None
        finally:
            self._pending.pop(rid, None)
            self._requests.pop(rid, None)

    async def _read_loop(self) -> None:
        assert self._transport is not None
        while True:
            for frame in await self._transport.recv_batch():
                try:
                    self._on_reply(wire.decode_reply(frame))
                except BadFrame:
                    continue

    def _on_reply(self, reply: wire.FromScheduler) -> None:
        match reply:
            case wire.Outcomes(request_id=rid, outcomes=outcomes):
                waiting = self._waits.get(rid)
                if waiting is not None:
                    waiting.add(outcomes)
            case wire.Events(request_id=rid):
                watch = self._watches.get(rid)
                if watch is not None:
                    watch[1].put_nowait(reply)
            case wire.Welcome():
                if self._welcome is not None and not self._welcome.done():
                    self._welcome.set_result(reply)
                if reply.instance != self._instance and self._instance:
                    self._instance = reply.instance
                    self._rewait()  # a restarted scheduler forgot our waits
            case wire.ErrorReply(code="hello_first", request_id=rid):
                # The scheduler restarted and does not know us: it did not act on
                # the request, so say hello and send it again.
                self._send(wire.ClientHello(wire.PROTOCOL_VERSION))
                if rid in self._requests:
                    self._send(self._requests[rid])
            case wire.ErrorReply(request_id=rid, code=code, message=text):
                error = RequestRefused(code, text)
                if rid in self._pending and not self._pending[rid].done():
                    self._pending[rid].set_exception(error)
                elif rid in self._submit_waits and self._submit_waits[rid] in self._waits:
                    waiting = self._waits[self._submit_waits[rid]]
                    waiting.error = error
                    waiting.done.set()
                elif rid in self._waits:
                    self._waits[rid].error = error
                    self._waits[rid].done.set()
            case (
                wire.Submitted()
                | wire.StatusReply()
                | wire.JobReply()
                | wire.CancelReply()
                | wire.JobList()
                | wire.RequeueReply()
                | wire.WorkflowSubmitted()
                | wire.WorkflowReply()
            ):
                future = self._pending.get(reply.request_id)
                if future is not None and not future.done():
                    future.set_result(reply)
                if isinstance(reply, wire.Submitted) and reply.request_id in self._submit_waits:
                    waiting = self._waits.get(self._submit_waits[reply.request_id])
                    if waiting is not None:  # now, before any Outcomes read in this batch
                        waiting.arm(reply.job_ids)

    def _rewait(self) -> None:
        for rid, waiting in self._waits.items():
            if waiting.remaining:
                self._send(wire.Wait(rid, sorted(waiting.remaining)))
        for rid, (job_id, _) in self._watches.items():
            self._send(wire.Subscribe(rid, job_id))

    async def _recheck_loop(self) -> None:
        while True:
            await asyncio.sleep(RECHECK_S)
            if self._waits or self._watches:
                self._send(wire.ClientHello(wire.PROTOCOL_VERSION))


class Client:
    """Blocking wrapper around AsyncClient, for scripts and REPLs."""

    def __init__(self, address: str | None = None, *, connect_timeout: float = 5.0) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, daemon=True, name="corral-client"
        )
        self._thread.start()
        self._async = AsyncClient(address, connect_timeout=connect_timeout)
        try:
            self._run(self._async.connect())
        except BaseException:
            self._stop_loop()
            raise

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def submit(
        self,
        task: str,
        args: Sequence[Any] = (),
        kwargs: dict[str, Any] | None = None,
        **options: Any,
    ) -> int:
        return self._run(self._async.submit(task, args, kwargs, **options))

    def submit_many(self, specs: Sequence[wire.JobSpec]) -> list[int]:
        return self._run(self._async.submit_many(specs))

    def wait(
        self, job_ids: Iterable[int], timeout: float | None = None
    ) -> dict[int, wire.JobOutcome]:
        return self._run(self._async.wait(list(job_ids), timeout))

    def result(self, job_id: int, timeout: float | None = None) -> Any:
        return self._run(self._async.result(job_id, timeout))

    def submit_and_wait(
        self, specs: Sequence[wire.JobSpec], timeout: float | None = None
    ) -> list[wire.JobOutcome]:
        return self._run(self._async.submit_and_wait(specs, timeout))

    def run(
        self,
        task: str,
        args: Sequence[Any] = (),
        kwargs: dict[str, Any] | None = None,
        *,
        timeout: float | None = None,
        **options: Any,
    ) -> Any:
        return self._run(self._async.run(task, args, kwargs, timeout=timeout, **options))

    def status(self) -> wire.StatusView:
        return self._run(self._async.status())

    def job(self, job_id: int) -> wire.JobView | None:
        return self._run(self._async.job(job_id))

    def cancel(self, job_ids: Iterable[int]) -> dict[int, str]:
        return self._run(self._async.cancel(list(job_ids)))

    def submit_workflow(
        self,
        steps: dict[str, tuple[wire.JobSpec, Sequence[str]]] | Sequence[wire.StepSpec],
        name: str = "",
        idempotency_key: str | None = None,
    ) -> tuple[int, dict[str, int]]:
        return self._run(self._async.submit_workflow(steps, name, idempotency_key))

    def workflow(self, workflow_id: int) -> wire.WorkflowView | None:
        return self._run(self._async.workflow(workflow_id))

    def watch(self, job_id: int | None = None) -> Iterator[wire.Event]:
        """Blocking iterator over ``AsyncClient.watch``."""
        stream = self._async.watch(job_id)

        async def next_event() -> wire.Event:
            return await anext(stream)

        async def close() -> None:
            await stream.aclose()

        try:
            while True:
                try:
                    yield self._run(next_event())
                except StopAsyncIteration:
                    return
        finally:
            self._run(close())

    def requeue(
        self, job_ids: Iterable[int] = (), *, all_failed: bool = False
    ) -> wire.RequeueReply:
        return self._run(self._async.requeue(list(job_ids), all_failed=all_failed))

    def jobs(
        self, status: str | None = None, queue: str | None = None, limit: int = 100
    ) -> list[wire.JobView]:
        return self._run(self._async.jobs(status, queue, limit))

    def close(self) -> None:
        try:
            self._run(self._async.close())
        finally:
            self._stop_loop()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
