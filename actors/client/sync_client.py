"""``Client``: the blocking SDK, for scripts and REPLs. It runs an ``AsyncClient`` on a
private event-loop thread; every method is the async one's, waited for."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Coroutine, Iterable, Iterator, Sequence
from typing import Any, TypeVar

from actors.client.async_client import AsyncClient
from transport import protocol as wire

T = TypeVar("T")


class Client:
    """Blocking wrapper around AsyncClient, for scripts and REPLs."""

    def __init__(
        self,
        address: str | Sequence[str] | None = None,
        *,
        connect_timeout: float = 5.0,
        request_timeout: float = 60.0,
        key: str | os.PathLike[str] | None = None,
        server_key: str | os.PathLike[str] | None = None,
    ) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, daemon=True, name="corral-client"
        )
        self._thread.start()
        try:
            # "a,b" or a list: several schedulers, the leader followed. A bad address
            # raises ConfigError here, and the loop thread stops with it.
            self._async = AsyncClient(
                address,
                connect_timeout=connect_timeout,
                request_timeout=request_timeout,
                key=key,
                server_key=server_key,
            )
            self._run(self._async.connect())  # on failure it has closed itself
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
        *,
        require_worker: bool = False,
        **options: Any,
    ) -> int:
        return self._run(
            self._async.submit(task, args, kwargs, require_worker=require_worker, **options)
        )

    def submit_many(
        self, specs: Sequence[wire.JobSpec], *, require_worker: bool = False
    ) -> list[int]:
        return self._run(self._async.submit_many(specs, require_worker=require_worker))

    def set_limit(
        self, name: str, rate: str | tuple[int, float], *, burst: int | None = None
    ) -> list[wire.LimitView]:
        return self._run(self._async.set_limit(name, rate, burst=burst))

    def limits(self) -> list[wire.LimitView]:
        return self._run(self._async.limits())

    def remove_limit(self, name: str) -> list[wire.LimitView]:
        return self._run(self._async.remove_limit(name))

    def wait(
        self, job_ids: Iterable[int], timeout: float | None = None
    ) -> dict[int, wire.JobOutcome]:
        return self._run(self._async.wait(list(job_ids), timeout))

    def result(self, job_id: int, timeout: float | None = None) -> Any:
        return self._run(self._async.result(job_id, timeout))

    def submit_and_wait(
        self,
        specs: Sequence[wire.JobSpec],
        timeout: float | None = None,
        *,
        require_worker: bool = False,
    ) -> list[wire.JobOutcome]:
        return self._run(self._async.submit_and_wait(specs, timeout, require_worker=require_worker))

    def run(
        self,
        task: str,
        args: Sequence[Any] = (),
        kwargs: dict[str, Any] | None = None,
        *,
        timeout: float | None = None,
        require_worker: bool = False,
        **options: Any,
    ) -> Any:
        return self._run(
            self._async.run(
                task, args, kwargs, timeout=timeout, require_worker=require_worker, **options
            )
        )

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
        self, status: str | None = None, queue: str | None = None, limit: int = 100, **filters: Any
    ) -> list[wire.JobView]:
        """``AsyncClient.jobs``: keyword filters ``task``, ``key``, ``created_after``,
        ``created_before``, ``before``."""
        return self._run(self._async.jobs(status, queue, limit, **filters))

    def add_schedule(
        self,
        name: str,
        task: str,
        args: Sequence[Any] = (),
        kwargs: dict[str, Any] | None = None,
        **options: Any,
    ) -> wire.ScheduleView:
        return self._run(self._async.add_schedule(name, task, args, kwargs, **options))

    def schedules(self) -> list[wire.ScheduleView]:
        return self._run(self._async.schedules())

    def pause_schedule(self, name: str) -> wire.ScheduleView:
        return self._run(self._async.pause_schedule(name))

    def resume_schedule(self, name: str) -> wire.ScheduleView:
        return self._run(self._async.resume_schedule(name))

    def remove_schedule(self, name: str) -> wire.ScheduleView:
        return self._run(self._async.remove_schedule(name))

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
