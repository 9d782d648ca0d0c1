"""``LeaseBound``: an async handler refused its next step once its lease has lapsed."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import time
from typing import Any

import pytest

from actors.worker.executors import AsyncRunner
from actors.worker.lease_bound import LeaseBound


async def test_within_its_lease_a_handler_runs_to_its_value() -> None:
    async def handler() -> int:
        await asyncio.sleep(0)
        await asyncio.sleep(0.01)
        return 7

    assert await asyncio.create_task(LeaseBound(handler(), lambda: time.monotonic() + 60)) == 7


async def test_past_its_lease_it_gets_cancelled_at_its_await_and_its_cleanup_may_await() -> None:
    expiry = time.monotonic() + 60
    steps: list[str] = []

    async def handler() -> None:
        steps.append("first")
        try:
            await asyncio.sleep(0.01)
            steps.append("second")  # never: the lease lapsed while it waited
        finally:
            await asyncio.sleep(0)  # cleanup that awaits is not cancelled again
            steps.append("cleanup")

    task = asyncio.create_task(LeaseBound(handler(), lambda: expiry))
    await asyncio.sleep(0)  # its first step, within the lease
    expiry = time.monotonic() - 1  # the lease lapses (a pause, say)
    with pytest.raises(asyncio.CancelledError):
        await task
    assert steps == ["first", "cleanup"]
    assert task.cancelled()


async def test_a_handler_being_stopped_is_not_cancelled_twice() -> None:
    expiry = time.monotonic() + 60
    steps: list[str] = []

    async def handler() -> None:
        try:
            await asyncio.sleep(10)
        finally:
            await asyncio.sleep(0.01)
            steps.append("cleanup")

    bound = LeaseBound(handler(), lambda: expiry)
    task = asyncio.create_task(bound)
    await asyncio.sleep(0)
    bound.stop()  # the worker stops it (AsyncRunner.stop)
    task.cancel()
    await asyncio.sleep(0)
    expiry = time.monotonic() - 1  # and its lease lapses during its cleanup
    with pytest.raises(asyncio.CancelledError):
        await task
    assert steps == ["cleanup"]


# Shapes of async handlers, each suspended across a stall of the loop past its lease. The
# stall is a blocking sleep in a loop callback: to the loop, a pause (SIGSTOP) of the
# process is the same, timers come due all at once when it ends. Each wakes at WAKE, during
# the stall and before the lease's expiry, so its step comes before the fence's.
WAKE = 0.15


async def _timeout(log: Any) -> None:
    try:
        async with asyncio.timeout(WAKE):
            await asyncio.sleep(5)
    except TimeoutError:
        log("took the lease's stop for its timeout")
        await asyncio.sleep(0)
        log("after its fallback await")


async def _step(log: Any) -> None:
    await asyncio.sleep(WAKE)
    log("a sub-task's step (its write)")


async def _wait_for(log: Any) -> None:
    await asyncio.wait_for(_step(log), 10)
    log("after wait_for")


async def _gather(log: Any) -> None:
    await asyncio.gather(_step(log))
    log("after gather")


async def _task_group(log: Any) -> None:
    async with asyncio.TaskGroup() as group:
        group.create_task(_step(log))
    log("after the TaskGroup")


async def _timeout_within_the_lease_first(log: Any) -> None:
    try:
        async with asyncio.timeout(0.02):
            await asyncio.sleep(1)
    except TimeoutError:
        pass  # an ordinary timeout, handled well within the lease
    await asyncio.sleep(WAKE - 0.02)
    log("a step after the handled timeout")


@pytest.mark.parametrize(
    "handler", [_timeout, _wait_for, _gather, _task_group, _timeout_within_the_lease_first]
)
async def test_no_step_of_a_handler_or_its_tasks_runs_past_its_lease(handler: Any) -> None:
    """A review found each of these stepping past the lease after a pause: tasks it started
    were not bound, a handled timeout switched the check off, and its asyncio.timeout
    turned the lease's stop into a TimeoutError it handled."""
    runner = AsyncRunner()
    expiry = time.monotonic() + 0.2
    late: list[str] = []

    def log(text: str) -> None:
        if time.monotonic() > expiry:
            late.append(text)

    run = runner.start(1, handler, [log], {}, contextvars.copy_context(), lambda: expiry)

    async def fence() -> None:  # as Worker._fence_loop: a task asleep until the lapse
        await asyncio.sleep(expiry - time.monotonic())
        runner.stop(1)

    fencing = asyncio.create_task(fence())
    await asyncio.sleep(0.1)
    asyncio.get_running_loop().call_soon(time.sleep, 0.4)  # the loop stalls past the lease
    with contextlib.suppress(BaseException):
        await run.done
    await fencing
    assert late == []
