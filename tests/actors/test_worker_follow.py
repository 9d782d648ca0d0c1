"""A worker given several scheduler addresses follows the leader: real ZeroMQ ROUTER sockets
in the test play the leader, a standby (NotLeader) or a scheduler that went silent; the
worker is the real one, in this process, with a thread pool."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from actors.worker.agent import Worker
from tests.helpers.fake_scheduler import FakeScheduler
from tests.helpers.procs import free_address
from tests.helpers.standby import standby
from transport import protocol as wire

calls: list[str] = []


def nap(seconds: float) -> str:
    calls.append("nap")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:  # small steps: a self-fencing stop lands promptly
        time.sleep(0.01)
    return "napped"


TASKS: dict[str, Callable[..., Any]] = {"nap": nap}


def job(job_id: int, seconds: float) -> wire.Assignment:
    return wire.Assignment(job_id, 1, "nap", wire.pack([seconds]), wire.pack({}), 1)


@pytest.fixture
def fakes() -> Iterator[tuple[FakeScheduler, FakeScheduler]]:
    """Two schedulers, A and B, answering as leaders until a test says otherwise."""
    a, b = FakeScheduler(free_address()), FakeScheduler(free_address())
    a.instance, b.instance = "a", "b"
    yield a, b
    a.close()
    b.close()


@asynccontextmanager
async def serving(
    *fakes: FakeScheduler, lease: float = 5.0, interval: float = 0.1
) -> AsyncIterator[None]:
    tasks = [asyncio.create_task(f.serve(lease, interval)) for f in fakes]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


@asynccontextmanager
async def running(addresses: str | list[str]) -> AsyncIterator[Worker]:
    calls.clear()
    worker = Worker(addresses, name="w", concurrency=2, registry=TASKS, pool="thread")
    task = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        worker.stop()
        worker.stop()  # at once: the test is over
        await asyncio.wait_for(task, 10)


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        await asyncio.sleep(0.01)


async def test_a_worker_given_a_standby_first_follows_the_leader_it_names(
    fakes: tuple[FakeScheduler, FakeScheduler], caplog: pytest.LogCaptureFixture
) -> None:
    _, leader = fakes
    with standby(leader.address) as fake:
        async with serving(leader), running(f"{fake.address},{leader.address}") as worker:
            await worker.link.welcomed.wait()
            assert worker.address == leader.address
            assert fake.count(wire.WorkerHello) == 1
    assert f"the scheduler at {fake.address} is a standby; following the leader at " in (
        caplog.text
    )


async def test_a_leader_named_outside_the_list_is_followed(
    fakes: tuple[FakeScheduler, FakeScheduler],
) -> None:
    _, leader = fakes
    with standby(leader.address) as fake:
        async with serving(leader), running(fake.address) as worker:
            await worker.link.welcomed.wait()
            assert worker.address == leader.address
            await leader.until(wire.Heartbeat)


async def test_a_standby_that_names_no_leader_sends_the_worker_to_the_next_address(
    fakes: tuple[FakeScheduler, FakeScheduler],
) -> None:
    _, leader = fakes
    with standby("") as fake:
        async with serving(leader), running([fake.address, leader.address]) as worker:
            await worker.link.welcomed.wait()
            assert worker.address == leader.address


async def test_a_leader_that_steps_down_hands_the_running_job_to_the_leader_it_names(
    fakes: tuple[FakeScheduler, FakeScheduler], caplog: pytest.LogCaptureFixture
) -> None:
    a, b = fakes
    async with serving(a, b), running([a.address, b.address]) as worker:
        await worker.link.welcomed.wait()
        await a.send(wire.Assign([job(1, 1.0)], 1, time.monotonic()))
        await until(lambda: 1 in worker.leases.held)
        a.standby = b.address  # A lost its term: it answers every frame with NotLeader
        hello = await b.until(wire.WorkerHello)
        assert (1, 1) in hello.leases, "the new leader is asked to adopt the running job"
        results = await b.until_reported()
        assert [(r.job_id, r.token, r.ok) for r in results] == [(1, 1, True)]
    assert calls == ["nap"]
    assert worker.fenced == 0
    assert f"the scheduler at {a.address} is no longer the leader; following" in caplog.text


async def test_a_silent_leader_is_left_and_the_next_one_adopts_the_running_job(
    fakes: tuple[FakeScheduler, FakeScheduler],
) -> None:
    a, b = fakes
    # A lease of 2 s and a heartbeat every 0.1 s: the worker leaves a silent scheduler
    # after max(2 heartbeats, half a lease) = 1 s, well before its lease lapses.
    async with serving(a, b, lease=2.0), running([a.address, b.address]) as worker:
        await worker.link.welcomed.wait()
        await a.send(wire.Assign([job(1, 2.5)], 1, time.monotonic()))
        await until(lambda: 1 in worker.leases.held)
        a.silent = True  # SIGKILLed, or cut off
        hello = await b.until(wire.WorkerHello)
        assert (1, 1) in hello.leases
        results = await b.until_reported()
        assert [(r.job_id, r.ok) for r in results] == [(1, True)]
    assert worker.fenced == 0, "renewed by B before its lease lapsed"
    assert calls == ["nap"]


async def test_with_no_scheduler_answering_the_worker_tries_each_and_fences_its_job(
    fakes: tuple[FakeScheduler, FakeScheduler], caplog: pytest.LogCaptureFixture
) -> None:
    a, b = fakes
    async with serving(a, b, lease=0.6), running([a.address, b.address]) as worker:
        await worker.link.welcomed.wait()
        await a.send(wire.Assign([job(1, 30.0)], 1, time.monotonic()))
        await until(lambda: 1 in worker.leases.held)
        a.silent = b.silent = True
        await until(lambda: worker.fenced == 1)
        await b.until(wire.WorkerHello)
        await a.until(wire.WorkerHello, 2)  # round robin: back to A
        await until(lambda: 1 not in worker.leases.held)  # stopped
    reported = a.reported() + b.reported()
    assert [(r.ok, r.error) for r in reported] == [
        (False, "self-fenced: lease of 0.6s not renewed")
    ]
    assert "self-fencing" in caplog.text


async def test_one_address_behaves_as_before_no_move_only_hellos(
    fakes: tuple[FakeScheduler, FakeScheduler],
) -> None:
    a, _ = fakes
    async with serving(a, lease=0.6), running(a.address) as worker:
        await worker.link.welcomed.wait()
        a.silent = True
        before = worker.link.epoch
        await a.until(wire.Heartbeat, a.count(wire.Heartbeat) + 10)  # 1 s of silence
        assert worker.link.epoch == before, "one address: the same socket, ZeroMQ reconnects"
        assert worker.address == a.address


def test_a_bad_address_is_refused_before_anything_starts() -> None:
    from actors.errors import ConfigError

    with pytest.raises(ConfigError, match="'tcp://b' is not allowed"):
        Worker("tcp://a:1,tcp://b", registry=TASKS)


@pytest.fixture(autouse=True)
def _logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "corral.worker")


async def test_a_worker_among_standbys_that_name_no_leader_says_so_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with standby("") as first, standby("") as second:
        async with running([first.address, second.address]) as worker:
            worker.link.warn_after = 0.5  # the 5 s of a real worker, shortened
            await until(lambda: "no leader yet" in caplog.text)
            await until(lambda: second.count(wire.WorkerHello) >= 2)
    assert (
        f"no leader yet: {first.address} or {second.address} answer as standby" in (caplog.text)
        or f"no leader yet: {second.address} or {first.address} answer as standby" in caplog.text
    )
    assert caplog.text.count("no leader yet") == 1
