"""Which runner runs a task, behind one handle for the worker agent.

An async handler runs on the worker's event loop (``AsyncRunner``); a sync one in a
child process (``ProcessRunner``, with ``pool="process"``) or in a thread
(``ThreadRunner``, with ``pool="thread"``). :class:`Runners` starts a handler with its
job's context set, stops one, passes heartbeat renewals on to the children's watchdogs,
and closes them all. Which tasks are coroutine functions is remembered: ``inspect``
costs a few µs per call, and the agent asks several times per job.
"""

from __future__ import annotations

import contextvars
import inspect
from collections.abc import Callable
from typing import Any

from actors.worker.executors import AsyncRunner, Deadline, Run, ThreadRunner
from actors.worker.options import job_timeout
from actors.worker.process_pool import ProcessRunner
from actors.worker.tasks import CURRENT_JOB, PendingContext


class Runners:
    def __init__(
        self,
        registry: dict[str, Callable[..., Any]],
        slots: int,
        pool: str,
        modules: list[str],
    ) -> None:
        self._registry = registry
        self._slots = slots
        self._pool = pool
        self._modules = modules
        self._threads = ThreadRunner(slots)
        self._asyncs = AsyncRunner()
        self._processes: ProcessRunner | None = None  # started by prepare()
        self._async_tasks: dict[str, bool] = {}

    async def prepare(self) -> None:
        """Start the process pool, if the worker has one and a sync task to run in it, and
        wait until its first child is ready: before the hello, so the first job does not
        wait for the imports. A worker whose tasks are all async starts no process."""
        if self._pool == "process" and not all(map(self.is_async, self._registry)):
            self._processes = ProcessRunner(self._slots, self._modules)
            await self._processes.prepare()

    def is_async(self, task_name: str) -> bool:
        """Whether a task runs on the loop."""
        known = self._async_tasks.get(task_name)
        if known is None:
            fn = self._registry.get(task_name)
            known = self._async_tasks[task_name] = inspect.iscoroutinefunction(fn)
        return known

    def in_child(self, task_name: str) -> bool:
        """Whether a task runs in a child process (its result comes back encoded)."""
        return self._processes is not None and not self.is_async(task_name)

    def start(
        self,
        job_id: int,
        task_name: str,
        fn: Callable[..., Any],
        args: Any,
        kwargs: Any,
        ctx: PendingContext[Any],
        deadline: Deadline,
        timeout: float | None = None,
    ) -> Run:
        """Start ``fn`` for ``job_id``; its handler reads ``ctx`` through ``context()``
        (built only if it asks; a child process gets it built, and the job's timeout, its
        own or its task's, as a limit of its own: ``timeout`` is the job's own)."""
        processes = self._processes
        if processes is not None and not self.is_async(task_name):
            timeout = job_timeout(timeout, task_name)
            ctx_built = ctx.get()
            return processes.start(job_id, task_name, args, kwargs, ctx_built, deadline, timeout)
        handler_context = contextvars.copy_context()
        handler_context.run(CURRENT_JOB.set, ctx)
        runner = self._asyncs if self.is_async(task_name) else self._threads
        return runner.start(job_id, fn, args, kwargs, handler_context, deadline)

    def stop(self, job_id: int, task_name: str) -> None:
        if self.is_async(task_name):
            self._asyncs.stop(job_id)
        elif self._processes is not None:
            self._processes.stop(job_id)
        else:
            self._threads.stop(job_id)

    def renewed(self) -> None:
        """A heartbeat was acknowledged: the children's watchdogs extend their leases."""
        if self._processes is not None:
            self._processes.renew()

    def close(self) -> None:
        self._threads.close()
        self._asyncs.close()
        if self._processes is not None:
            self._processes.close()
