"""``AsyncClient``: the SDK's requests (submit, workflows, wait, status, cancel, watch) on
top of a ``Connection`` (``actors.client.connection``), which matches replies to requests and
keeps time.

Submissions are acknowledged only after the scheduler committed them. If the scheduler
restarts (its Welcome carries a new instance id) the client re-registers what it still
waits for, so ``wait`` survives a scheduler crash.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import Any, Literal, TypeVar

from actors.client.connection import Connection
from actors.client.limits import set_limit_request
from actors.client.pending import Waiting
from actors.client.schedules import schedule_spec
from actors.client.specs import frames_of, job_spec
from actors.errors import JobFailed, RequestRefused, WaitTimeout
from transport import protocol as wire

T = TypeVar("T")

# Jobs per Submit / Wait frame: keeps frames far below the 8 MiB limit (frames_of also
# splits by bytes, for jobs with large arguments).
SUBMIT_CHUNK = 5_000
WAIT_CHUNK = 50_000


def _submit_frame(rid: int, *, jobs: list[wire.JobSpec], require_worker: bool) -> wire.Submit:
    return wire.Submit(rid, jobs, 0, require_worker)


async def _paced(attempt: Callable[[], Awaitable[T]], deadline: float | None = None) -> T:
    """``attempt()``, made again after the wait the scheduler asks for while it refuses a
    submission over its client's rate (``RequestRefused.retry_after``: nothing of it was
    created); any other refusal, or a wait past ``deadline``, is raised."""
    while True:
        try:
            return await attempt()
        except RequestRefused as exc:
            wait = exc.retry_after
            if not wait or (deadline is not None and time.monotonic() + wait > deadline):
                raise
            await asyncio.sleep(wait)


class AsyncClient(Connection):
    """Async client: ``async with AsyncClient(address) as client: ...``.

    ``request_timeout`` bounds how long any request waits for its reply; a scheduler that
    stops answering altogether is noticed after ``silence_timeout`` (RequestTimedOut)."""

    async def __aenter__(self) -> AsyncClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    # ------------------------------------------------------------- submitting

    async def submit(
        self,
        task: str,
        args: Sequence[Any] = (),
        kwargs: dict[str, Any] | None = None,
        *,
        require_worker: bool = False,
        **options: Any,
    ) -> int:
        """Submit one job; returns its id once the scheduler has committed it.

        ``require_worker``: refuse at once (RequestRefused, code ``no_worker``) if no
        connected worker has the task, instead of letting the job wait for one."""
        spec = job_spec(task, args, kwargs, **options)
        return (await self.submit_many([spec], require_worker=require_worker))[0]

    async def submit_many(
        self, specs: Sequence[wire.JobSpec], *, require_worker: bool = False
    ) -> list[int]:
        """Submit many jobs in few frames; ids in the same order. Each chunk is all-or-nothing."""
        ids: list[int] = []
        async for chunk_ids in self.submit_chunks(specs, require_worker=require_worker):
            ids += chunk_ids
        return ids

    async def submit_chunks(
        self,
        specs: Sequence[wire.JobSpec],
        *,
        chunk: int = SUBMIT_CHUNK,
        require_worker: bool = False,
    ) -> AsyncIterator[list[int]]:
        """Submit in frames of at most ``chunk`` jobs, one after the other, yielding each
        frame's ids (in order) as soon as it is committed. Each frame is all-or-nothing;
        if one fails, the frames before it stay committed (give jobs idempotency keys to
        make submitting the rest again safe). A frame refused for the client's submission
        rate (``--max-submit-rate``: nothing of it was created) is sent again once the
        scheduler says it would pass: the rate slows a fast client down, it does not fail."""
        for part in frames_of(specs, chunk):
            build = functools.partial(_submit_frame, jobs=part, require_worker=require_worker)
            reply: wire.Submitted = await _paced(functools.partial(self._request, build))
            yield reply.job_ids

    async def submit_and_wait(
        self,
        specs: Sequence[wire.JobSpec],
        timeout: float | None = None,
        *,
        require_worker: bool = False,
    ) -> list[wire.JobOutcome]:
        """Submit jobs and wait until every one has ended, in one round trip per chunk:
        each Submit carries its own wait. Outcomes in submission order (one per job, so a
        repeated idempotency key repeats its job's outcome). Raises WaitTimeout when
        ``timeout`` passes (the jobs go on), RequestRefused for a refused chunk (nothing
        of it was created), RequestTimedOut if a chunk is not acknowledged in time."""
        outcomes: dict[int, wire.JobOutcome] = {}
        deadline = None if timeout is None else time.monotonic() + timeout
        order: list[int] = []
        for part in frames_of(specs, SUBMIT_CHUNK):

            def submit(part: Sequence[wire.JobSpec] = part) -> Awaitable[Any]:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                return self._submit_waiting(part, left, require_worker)

            job_ids, done = await _paced(submit, deadline)
            order += job_ids
            outcomes.update(done)
        return [outcomes[job_id] for job_id in order]

    async def _submit_waiting(
        self, chunk: Sequence[wire.JobSpec], timeout: float | None, require_worker: bool
    ) -> tuple[list[int], dict[int, wire.JobOutcome]]:
        """One Submit carrying its Wait. This coroutine sleeps until the outcomes (or an
        error) are in: the read loop records the Submitted reply itself, so the caller is
        not woken at the moment its job is starting on a worker."""
        rid, wait_rid = next(self._ids), next(self._ids)
        message = wire.Submit(rid, list(chunk), wait_rid, require_worker)
        # Sent before the bookkeeping below: no reply is read before this coroutine
        # yields, and the frame leaves a few microseconds sooner.
        self._send(message)
        waiting = Waiting(set(), armed=False)
        self._waits[wait_rid] = waiting
        self._track(rid, message, waiting.fail)  # until Submitted arrives
        self._submit_waits[rid] = wait_rid
        try:
            try:
                async with asyncio.timeout(timeout):  # not wait_for: see Link._woken
                    await waiting.done.wait()
            except TimeoutError:
                raise WaitTimeout(sorted(waiting.remaining), timeout or 0.0) from None
            if waiting.error is not None:
                raise waiting.error
            return waiting.job_ids, waiting.outcomes
        finally:
            self._waits.pop(wait_rid, None)
            self._inflight.pop(rid, None)
            self._submit_waits.pop(rid, None)

    async def run(
        self,
        task: str,
        args: Sequence[Any] = (),
        kwargs: dict[str, Any] | None = None,
        *,
        timeout: float | None = None,
        require_worker: bool = False,
        **options: Any,
    ) -> Any:
        """Submit one job and return its result once it has run (one round trip, not two).

        Raises JobFailed if it ended any other way than SUCCEEDED, WaitTimeout after
        ``timeout`` seconds (the job itself goes on)."""
        [outcome] = await self.submit_and_wait(
            [job_spec(task, args, kwargs, **options)], timeout, require_worker=require_worker
        )
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

    # ------------------------------------------------------------- inspecting

    async def workflow(self, workflow_id: int) -> wire.WorkflowView | None:
        """A workflow's steps in topological order, each with its job's state."""
        reply = await self._request(lambda rid: wire.GetWorkflow(rid, workflow_id))
        return reply.workflow  # type: ignore[no-any-return]

    def watch(
        self, job_id: int | None = None, *, subscribed: asyncio.Event | None = None
    ) -> AsyncGenerator[wire.Event, None]:
        """Stream committed events: every job transition, worker health change and progress
        report (or only ``job_id``'s), in order, until the caller stops iterating.

        If this client falls behind, the scheduler drops the oldest events rather than slow
        down; the stream then yields an Event of kind ``"dropped"`` whose ``token`` is how
        many were lost. ``subscribed`` is set once the subscription is sent (events
        committed after the scheduler reads it are all streamed). Raises RequestRefused when
        the scheduler refuses the subscription (code ``quota``: ``--max-subscriptions``;
        ``not_found``: another client's job) or later evicts it (``evicted``: its 1,000
        subscriptions are taken, this key held the most)."""
        return self._stream(job_id, subscribed)

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

    # ------------------------------------------------------------- rate limits

    async def set_limit(
        self, name: str, rate: str | tuple[int, float], *, burst: int | None = None
    ) -> list[wire.LimitView]:
        """Create or change the rate limit of the jobs whose task or concurrency key is
        ``name``: ``rate`` "100/s", "30/m", "1000/h" (or (count, period seconds)), at most
        ``burst`` at once (default: one second's worth, at least 1). Needs the admin role
        with keys. Returns every limit. Raises RequestRefused (``invalid``)."""
        build = functools.partial(set_limit_request, name=name, rate=rate, burst=burst)
        build(0)  # refuse a bad rate here, before anything is sent
        reply = await self._request(build)
        return reply.limits  # type: ignore[no-any-return]

    async def limits(self) -> list[wire.LimitView]:
        """Every rate limit, by name."""
        reply = await self._request(lambda rid: wire.ListLimits(rid))
        return reply.limits  # type: ignore[no-any-return]

    async def remove_limit(self, name: str) -> list[wire.LimitView]:
        """Remove a rate limit (RequestRefused ``not_found`` if there is none by that
        name); its waiting jobs may start. Returns the limits left."""
        reply = await self._request(lambda rid: wire.RemoveLimit(rid, name))
        return reply.limits  # type: ignore[no-any-return]

    async def jobs(
        self,
        status: str | None = None,
        queue: str | None = None,
        limit: int = 100,
        *,
        task: str | None = None,
        key: str | None = None,
        created_after: float | None = None,
        created_before: float | None = None,
        before: int | None = None,
    ) -> list[wire.JobView]:
        """Jobs, newest first, only those matching every filter given: ``status``,
        ``queue``, ``task``, idempotency ``key``, created at or after ``created_after``
        and before ``created_before`` (Unix times); ``before``: ids below it (the last id
        of the page before: keyset paging)."""

        def build(rid: int) -> wire.ListJobs:
            return wire.ListJobs(
                rid, status, queue, limit, before, task, key, created_after, created_before
            )

        reply = await self._request(build)
        return reply.jobs  # type: ignore[no-any-return]

    # -------------------------------------------------------------- schedules

    async def add_schedule(
        self,
        name: str,
        task: str,
        args: Sequence[Any] = (),
        kwargs: dict[str, Any] | None = None,
        **options: Any,
    ) -> wire.ScheduleView:
        """Add a schedule (``schedule_spec``'s arguments: ``cron=`` or ``every=``, ``tz``,
        ``missed``, ``no_overlap``, job options); adding the same one again changes
        nothing. Needs the admin role with keys. Raises RequestRefused: ``invalid``,
        ``exists`` (the name has another spec: remove it first)."""
        spec = schedule_spec(name, task, args, kwargs, **options)
        reply = await self._request(lambda rid: wire.AddSchedule(rid, spec))
        return reply.schedules[0]  # type: ignore[no-any-return]

    async def schedules(self) -> list[wire.ScheduleView]:
        """Every schedule, by name."""
        reply = await self._request(lambda rid: wire.ListSchedules(rid))
        return reply.schedules  # type: ignore[no-any-return]

    async def pause_schedule(self, name: str) -> wire.ScheduleView:
        """Stop firing ``name`` until resumed (RequestRefused ``not_found`` if unknown)."""
        return await self._change_schedule(name, "pause")

    async def resume_schedule(self, name: str) -> wire.ScheduleView:
        """Fire ``name`` again, from its next fire time after now."""
        return await self._change_schedule(name, "resume")

    async def remove_schedule(self, name: str) -> wire.ScheduleView:
        """Delete ``name`` (its jobs stay); returns it as it was."""
        return await self._change_schedule(name, "remove")

    async def _change_schedule(
        self, name: str, action: Literal["pause", "resume", "remove"]
    ) -> wire.ScheduleView:
        reply = await self._request(lambda rid: wire.ChangeSchedule(rid, name, action))
        return reply.schedules[0]  # type: ignore[no-any-return]

    # ---------------------------------------------------------------- waiting

    async def wait(
        self, job_ids: Iterable[int], timeout: float | None = None
    ) -> dict[int, wire.JobOutcome]:
        """Wait until every job has ended; outcomes by job id. Raises WaitTimeout."""
        ids = list(dict.fromkeys(job_ids))
        waits: list[tuple[int, Waiting]] = []
        try:
            for start in range(0, len(ids), WAIT_CHUNK):
                chunk = ids[start : start + WAIT_CHUNK]
                rid = next(self._ids)
                waiting = Waiting(set(chunk))
                self._waits[rid] = waiting
                waits.append((rid, waiting))
                self._send(wire.Wait(rid, chunk))
            try:
                async with asyncio.timeout(timeout):  # not wait_for: see Link._woken
                    await asyncio.gather(*(w.done.wait() for _, w in waits))
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
