"""``LeaseBound``: an async handler refused its next step once its lease has lapsed."""

from __future__ import annotations

import asyncio
import time

import pytest

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

    task = asyncio.create_task(LeaseBound(handler(), lambda: expiry))
    await asyncio.sleep(0)
    task.cancel()  # the worker stops it
    await asyncio.sleep(0)
    expiry = time.monotonic() - 1  # and its lease lapses during its cleanup
    with pytest.raises(asyncio.CancelledError):
        await task
    assert steps == ["cleanup"]
