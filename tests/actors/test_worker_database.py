"""A worker keeps to the database it first worked for: job ids and fencing tokens mean
something only within one. Real ZeroMQ sockets in the test play schedulers that name
their database (Welcome, NotLeader) and refuse a hello from another one's worker, as the
real dispatcher does; the worker is the real one, in this process."""

from __future__ import annotations

import asyncio
import time

import pytest

from actors.worker.agent import Worker
from tests.actors.test_worker_follow import TASKS, calls, fakes, job, running, serving, until
from tests.helpers.fake_scheduler import FakeScheduler
from transport import protocol as wire

__all__ = ["fakes"]  # the fixture, used by name

OURS, THEIRS = "a" * 32, "b" * 32


async def test_an_address_serving_another_database_is_passed_over_with_one_line(
    fakes: tuple[FakeScheduler, FakeScheduler], caplog: pytest.LogCaptureFixture
) -> None:
    a, b = fakes
    a.database_id, b.database_id = OURS, THEIRS
    async with serving(a, b, lease=2.0), running([a.address, b.address]) as worker:
        await worker.link.welcomed.wait()
        assert worker.link.database_id == OURS
        await a.send(wire.Assign([job(1, 0.5)], 1, time.monotonic()))
        await until(lambda: 1 in worker.leases.held)
        a.silent = True  # gone: the worker looks further
        hello = await b.until(wire.WorkerHello)  # b.serve reads the socket: not recv
        assert hello.database_id == OURS, "the hello says where its leases are from"
        await until(lambda: "serves another database" in caplog.text)
        assert not worker.link.welcomed.is_set()
        assert b.count(wire.Heartbeat) == 0, "never welcomed there"
        assert worker.link.database_id == OURS
        assert b.reported() == [], "no result of ours went to the other database"
    line = next(r.getMessage() for r in caplog.records if "another database" in r.getMessage())
    assert b.address in line, line
    assert a.address in line, line


async def test_a_standby_of_another_database_is_not_followed(
    fakes: tuple[FakeScheduler, FakeScheduler], caplog: pytest.LogCaptureFixture
) -> None:
    a, b = fakes
    a.database_id, b.database_id = OURS, THEIRS
    elsewhere = "tcp://127.0.0.1:9"  # the leader it names: never to be tried
    async with serving(a, b), running([a.address, b.address]) as worker:
        await worker.link.welcomed.wait()
        a.silent = True
        b.standby = elsewhere
        await until(lambda: "serves another database" in caplog.text)
        assert worker.address != elsewhere
        assert "following the leader" not in caplog.text


async def test_an_idle_worker_joins_its_only_scheduler_started_on_a_new_database(
    fakes: tuple[FakeScheduler, FakeScheduler], caplog: pytest.LogCaptureFixture
) -> None:
    a, _ = fakes
    a.database_id = OURS
    async with serving(a), running(a.address) as worker:
        await worker.link.welcomed.wait()
        a.database_id, a.instance = THEIRS, "restarted"  # the same address, a new database
        worker.link.unwelcome()  # as a restarted scheduler's hello_first makes it
        await until(lambda: worker.link.database_id == THEIRS and worker.link.welcomed.is_set())
        await a.send(wire.Assign([job(1, 0.0)], 1, time.monotonic()))
        results = await a.until_reported()
        assert [(r.job_id, r.ok) for r in results] == [(1, True)]
    assert "now serves another database" in caplog.text or "joining it" in caplog.text


async def test_a_worker_holding_a_job_leaves_when_its_only_scheduler_has_another_database(
    fakes: tuple[FakeScheduler, FakeScheduler], caplog: pytest.LogCaptureFixture
) -> None:
    a, _ = fakes
    a.database_id = OURS
    calls.clear()
    worker = Worker(a.address, name="w", concurrency=2, registry=TASKS, pool="thread")
    async with serving(a):
        task = asyncio.create_task(worker.run())
        try:
            await worker.link.welcomed.wait()
            await a.send(wire.Assign([job(1, 5.0)], 1, time.monotonic()))
            await until(lambda: 1 in worker.leases.held)
            a.database_id, a.instance = THEIRS, "restarted"
            worker.link.unwelcome()  # it says hello again, claiming job 1 of OURS
            await asyncio.wait_for(task, 15)
        finally:
            worker.stop()
            worker.stop()
            await asyncio.gather(task, return_exceptions=True)
    assert worker.abandoned == [1]
    assert a.reported() == [], "the stopped job's result is never sent: it is another job there"
    assert "stopping job(s) 1 from the database served before and exiting" in caplog.text
