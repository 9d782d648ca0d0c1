"""The worker agent against a fake scheduler: a real ZeroMQ ROUTER socket in the test that
sends exactly the frames each case needs (lease basis, Assign seq, hello_first, acks) and
reads what the worker sends back. The worker is the real one, in this process."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import msgspec
import pytest

import tests.helpers.ledger_tasks  # noqa: F401 - registers the tasks the pool children run
from actors.worker.agent import Worker
from actors.worker.pool_child import EXIT_FENCED
from actors.worker.results import pack
from actors.worker.tasks import task
from tests.helpers.fake_scheduler import FakeScheduler, worker_on_fake
from tests.helpers.procs import free_address
from transport import protocol as wire

LEDGER = "tests.helpers.ledger_tasks"  # the process pool's children import it
calls: list[str] = []


def add(a: int, b: int) -> int:
    calls.append("add")
    return a + b


def nap(seconds: float) -> str:
    calls.append("nap")
    time.sleep(seconds)  # one C call: the thread cannot be stopped before it returns
    return "late"


def shout(chars: int) -> None:
    raise ValueError("x" * chars)


def hoard(size: int) -> bytes:
    return b"\0" * size


@task(name="test_worker_protocol.picky", retry_on=(OSError,), max_retries=2, timeout=0.2)
def picky(kind: str) -> None:
    if kind == "io":
        raise OSError("disk busy")
    if kind == "slow":
        for _ in range(200):
            time.sleep(0.01)
    raise ValueError("bad input")


TASKS: dict[str, Callable[..., Any]] = {
    "add": add,
    "nap": nap,
    "shout": shout,
    "hoard": hoard,
    "test_worker_protocol.picky": picky,
}


def job(job_id: int, task_name: str, *args: Any, attempt: int = 1, **kw: Any) -> wire.Assignment:
    timeout = kw.pop("timeout", None)
    return wire.Assignment(
        job_id, job_id, task_name, wire.pack(list(args)), wire.pack(kw), attempt, timeout=timeout
    )


@pytest.fixture
async def fake() -> AsyncIterator[tuple[FakeScheduler, Worker]]:
    calls.clear()
    async with worker_on_fake(concurrency=2, registry=TASKS, pool="thread") as both:
        yield both


async def test_an_assignment_read_after_its_lease_lapsed_is_dropped_and_not_listed(
    fake: tuple[FakeScheduler, Worker],
) -> None:
    scheduler, worker = fake
    await scheduler.welcome(lease=0.3)
    # No heartbeat is acknowledged: wait until the worker's own lease clock has lapsed,
    # as it would have had the worker been paused with the Assign in its socket.
    await worker.link.welcomed.wait()
    leases = worker.leases
    while time.monotonic() <= leases.renewed_at + leases.lease:  # noqa: ASYNC110 - a clock
        await asyncio.sleep(0.02)
    stale = time.monotonic() - 1.0  # the newest heartbeat we had heard was sent 1 s ago
    seq = await scheduler.assign(job(1, "add", 1, 2), basis=stale)
    beat = await scheduler.recv(wire.Heartbeat)
    while beat.assign_seq < seq:
        beat = await scheduler.recv(wire.Heartbeat)
    assert beat.leases == [], "a dropped assignment is not held"
    assert calls == [], "its handler never ran"
    assert worker.dropped == 1
    sent = [f for f in scheduler.frames if isinstance(f, wire.Results)]
    while not sent:
        sent = [await scheduler.recv(wire.Results)]
    assert [(f.results, f.credits) for f in sent] == [([], 1)], "no result; its slot back"


async def test_a_duplicated_or_reordered_assign_frame_never_runs_a_job_again(
    fake: tuple[FakeScheduler, Worker],
) -> None:
    scheduler, worker = fake
    await scheduler.welcome()
    frame = wire.Assign([job(1, "add", 1, 2)], 7, time.monotonic())
    await scheduler.send(frame)
    [first] = await scheduler.results(1)
    await scheduler.send(wire.ResultsAck([1], []))
    await scheduler.send(frame)  # the same frame again, after the job finished
    await scheduler.send(wire.Assign([job(2, "add", 2, 2)], 6, time.monotonic()))  # older
    beat = await scheduler.recv(wire.Heartbeat)
    while beat.assign_seq != 7 or beat.sent_at < time.monotonic() - 0.05:
        beat = await scheduler.recv(wire.Heartbeat)
    assert first.ok
    assert calls == ["add"], "each job ran once; the older frame's job never"
    assert worker.executed == 1


async def test_a_new_scheduler_instance_numbers_its_assign_frames_anew(
    fake: tuple[FakeScheduler, Worker],
) -> None:
    scheduler, _ = fake
    await scheduler.welcome()
    await scheduler.send(wire.Assign([job(1, "add", 1, 2)], 1000, time.monotonic()))
    await scheduler.results(1)
    await scheduler.send(wire.ResultsAck([1], []))
    # The scheduler restarted (another instance) whose numbering starts lower.
    await scheduler.send(wire.ErrorReply("hello_first", "say hello"))
    await scheduler.recv(wire.WorkerHello)
    await scheduler.send(wire.Welcome(wire.PROTOCOL_VERSION, 0.1, "restarted", 5.0))
    await scheduler.send(wire.Assign([job(2, "add", 2, 2)], 5, time.monotonic()))
    [second] = await scheduler.results(1)
    assert (second.job_id, second.ok) == (2, True)


async def test_a_fresh_assignment_is_listed_with_its_assign_seq(
    fake: tuple[FakeScheduler, Worker],
) -> None:
    scheduler, _ = fake
    await scheduler.welcome()
    seq = await scheduler.assign(job(1, "nap", 0.5))
    beat = await scheduler.recv(wire.Heartbeat)
    while beat.assign_seq < seq:
        beat = await scheduler.recv(wire.Heartbeat)
    assert beat.leases == [(1, 1)]
    [result] = await scheduler.results(1)
    assert result.ok


async def test_a_timed_out_thread_keeps_its_slot_until_it_returns(
    fake: tuple[FakeScheduler, Worker],
) -> None:
    scheduler, _ = fake
    await scheduler.welcome()
    await scheduler.assign(job(1, "nap", 1.0, timeout=0.2))
    first = await scheduler.recv(wire.Results)
    [timed_out] = first.results
    assert (timed_out.ok, timed_out.error) == (False, "timed out after 0.2s")
    assert first.credits == 0, "the thread still sleeps: its slot is not free"
    later = await scheduler.recv(wire.Results)
    assert (later.results, later.credits) == ([], 1), "the slot comes back when it returns"


async def test_a_job_timeout_counts_from_its_handler_start(
    fake: tuple[FakeScheduler, Worker],
) -> None:
    scheduler, _ = fake
    await scheduler.welcome()
    # Both threads busy for 0.5 s; a third job with a 0.3 s timeout waits for one of them
    # (more jobs than slots: the scheduler would not do it, but the clock must be right).
    await scheduler.assign(job(1, "nap", 0.5), job(2, "nap", 0.5), job(3, "nap", 0.1, timeout=0.3))
    results = {r.job_id: r for r in await scheduler.results(3)}
    assert results[3].ok, results[3].error


async def test_retry_is_false_when_a_retry_cannot_help(fake: tuple[FakeScheduler, Worker]) -> None:
    scheduler, _ = fake
    await scheduler.welcome()
    await scheduler.assign(
        job(1, "nosuch"),
        job(2, "add", 1),
        job(3, "test_worker_protocol.picky", "value"),
        job(4, "test_worker_protocol.picky", "io"),
        job(5, "test_worker_protocol.picky", "io", attempt=3),
        job(6, "test_worker_protocol.picky", "slow"),
    )
    results = {r.job_id: r for r in await scheduler.results(6)}
    assert not any(r.ok for r in results.values())
    assert results[1].retry is False
    assert "'nosuch' is not registered" in (results[1].error or "")
    assert results[2].retry is False
    assert (results[2].error or "").startswith("arguments do not match add(a, b): ")
    assert "missing a required argument: 'b'" in (results[2].error or "")
    assert calls == [], "arguments that do not bind never reach the handler"
    assert results[3].retry is False, "ValueError is not in retry_on"
    assert results[4].retry is True, "OSError is, and attempt 1 is within max_retries"
    assert results[5].retry is False, "attempt 3 > max_retries=2: final"
    assert results[6].error == "timed out after 0.2s", "the task's timeout applies"


async def test_oversized_errors_and_results_fail_alone_in_frames_under_the_limit(
    fake: tuple[FakeScheduler, Worker],
) -> None:
    scheduler, _ = fake
    await scheduler.welcome()
    await scheduler.assign(job(1, "shout", 100_000), job(2, "add", 1, 2))
    await scheduler.assign(job(3, "hoard", 9 * 1024 * 1024), job(4, "add", 2, 2))
    results = {r.job_id: r for r in await scheduler.results(4)}
    assert len(results[1].error or "") <= wire.MAX_ERROR_CHARS
    assert "characters cut" in (results[1].error or "")
    assert (results[1].error or "").rstrip().endswith("x"), "the exception line's tail is kept"
    assert results[3].ok is False
    assert results[3].retry is False
    assert "bytes exceeds the frame limit" in (results[3].error or "")
    assert wire.unpack(results[2].result) == 3
    assert wire.unpack(results[4].result) == 4


def test_results_frames_are_split_under_the_frame_limit() -> None:
    big = [
        (wire.JobResult(i, 1, True, msgspec.Raw(b"\xc4" + b"\0" * 3_000_000)), True)
        for i in range(1, 8)
    ]
    frames = pack(big, 2)
    assert len(frames) > 1
    assert all(len(wire.encode(f)) <= wire.MAX_FRAME_BYTES for f in frames)
    assert sum(len(f.results) for f in frames) == 7
    total = sum(len(f.results) if f.credits == -1 else f.credits for f in frames)
    assert total == 9, "every freed slot, and the two spare ones, are credited once"


async def test_hello_first_replies_make_one_hello_per_episode_then_unacked_results_resend(
    fake: tuple[FakeScheduler, Worker],
) -> None:
    scheduler, _ = fake
    await scheduler.welcome()
    await scheduler.assign(job(1, "add", 1, 2))
    [result] = await scheduler.results(1)  # not acknowledged
    scheduler.frames.clear()
    for _ in range(5):  # the scheduler restarted: every frame gets one of these
        await scheduler.send(wire.ErrorReply("hello_first", "say hello first"))
    hello = await scheduler.recv(wire.WorkerHello)
    assert (1, 1) in hello.leases, "the unacknowledged result is claimed"
    with pytest.raises(TimeoutError):
        await scheduler.recv(wire.WorkerHello, timeout=0.5)  # below HELLO_RETRY_S
    assert sum(isinstance(f, wire.WorkerHello) for f in scheduler.frames) == 1
    await scheduler.send(wire.Welcome(wire.PROTOCOL_VERSION, 0.1, "fake2", 5.0))
    resent = await scheduler.recv(wire.Results)
    assert resent.results == [result]


async def test_self_fencing_is_logged_once_per_episode(
    fake: tuple[FakeScheduler, Worker], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "corral.worker")
    scheduler, _ = fake
    await scheduler.welcome(lease=0.3, interval=0.05)
    await scheduler.assign(job(1, "nap", 0.6), job(2, "nap", 0.6))  # no heartbeat is acked
    await scheduler.results(2)
    beat = await scheduler.recv(wire.Heartbeat)
    await scheduler.send(wire.HeartbeatAck(beat.sent_at))
    for _ in range(3):
        beat = await scheduler.recv(wire.Heartbeat)
    text = caplog.text
    assert text.count("no heartbeat acknowledged") == 1
    assert "stopping 2 job(s)" in text
    assert text.count("heartbeats acknowledged again") == 1


async def test_a_failure_is_logged_at_warning_with_its_traceback_at_info(
    fake: tuple[FakeScheduler, Worker], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "corral.worker")
    scheduler, _ = fake
    await scheduler.welcome()
    await scheduler.assign(job(7, "shout", 5))
    await scheduler.results(1)
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "task shout failed: job 7, attempt 1, token 7: ValueError: xxxxx" in warning.message
    infos = [r for r in caplog.records if r.levelno == logging.INFO]
    tracebacks = [r for r in infos if "Traceback" in r.message]
    assert len(tracebacks) == 1


LEASE_S, NAP_S = 3.0, 6.0  # see the test below


async def test_self_fencing_goes_on_while_the_scheduler_is_away(
    fake: tuple[FakeScheduler, Worker],
) -> None:
    scheduler, worker = fake
    # The lease is the time this process may stall between an Assign's lease basis and the
    # worker reading it (longer, and the worker rightly drops it unstarted), and between
    # the lapse and the fence loop's turn while the handler still runs (NAP_S - LEASE_S).
    # Both are 3 s: a loaded machine stalled it 0.9 s, so a 0.3 s lease sometimes made
    # job 1 or 3 a dropped assignment (no result came) instead of a fenced one.
    await scheduler.welcome(lease=LEASE_S, interval=0.05)
    await scheduler.assign(job(1, "nap", 0.05), job(2, "add", 0, 0))  # any thread job
    await scheduler.results(2)
    await scheduler.send(wire.ErrorReply("hello_first", "say hello first"))  # it restarted
    await scheduler.recv(wire.WorkerHello)
    # No Welcome comes; a lease granted just before the restart still lapses, and the
    # worker stops the job then, not when its handler would have returned.
    basis = time.monotonic()
    await scheduler.assign(job(3, "nap", NAP_S), basis=basis)
    [fenced] = await scheduler.results(1)
    assert fenced.job_id == 3
    assert (fenced.error or "").startswith("self-fenced")
    assert worker.fenced == 1
    since = worker.leases.fencing_since  # when the fence loop saw the lapse (no ack since)
    assert since is not None
    assert basis + LEASE_S < since < basis + NAP_S, "fenced after the lapse, while it ran"


async def test_a_killed_pool_child_frees_its_slot_only_once_its_replacement_is_ready() -> None:
    address = free_address()
    scheduler = FakeScheduler(address)
    worker = Worker(address, name="p", concurrency=1, pool="process", modules=[LEDGER])
    serving = asyncio.create_task(worker.run())
    try:
        await scheduler.welcome()
        await scheduler.assign(job(1, "nap", 30.0, timeout=0.3))
        first = await scheduler.recv(wire.Results)
        assert first.results[0].error == "timed out after 0.3s"
        assert first.credits == 0, "its child is being replaced: the slot is not ready"
        later = await scheduler.recv(wire.Results)
        assert (later.results, later.credits) == ([], 1)
        await scheduler.assign(job(2, "add", 2, 3))
        [done] = await scheduler.results(1)
        assert wire.unpack(done.result) == 5
    finally:
        worker.stop()
        worker.stop()
        await asyncio.wait_for(serving, 10)
        scheduler.sock.close()


async def test_a_pool_child_that_fenced_itself_while_the_agent_stalled_is_logged_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The child's own watchdog and the agent's fence loop race at the lease's expiry; when
    the agent was stalled (a loaded machine) the child's exit is read first. The episode is
    the same self-fencing and is logged and counted the same."""
    caplog.set_level(logging.INFO, "corral.worker")
    address = free_address()
    scheduler = FakeScheduler(address)
    worker = Worker(address, name="p", concurrency=1, pool="process", modules=[LEDGER])
    serving = asyncio.create_task(worker.run())
    try:
        await scheduler.welcome(lease=1.0, interval=0.05)  # no heartbeat is acknowledged
        await scheduler.assign(job(1, "nap", 30.0))
        deadline = time.monotonic() + 10
        while 1 not in worker.running or not worker.running[1].started.done():
            assert time.monotonic() < deadline, "the job never started"
            await asyncio.sleep(0.01)
        [child] = [c for c in worker._runners._processes._children if c.job]  # type: ignore[union-attr]
        # The agent's loop stalls (no await) until the child's watchdog ends the job.
        child.process.join(timeout=10)
        # Its kernel timer (kill_timer) fires at the expiry, before the watchdog's next look.
        assert child.process.exitcode in (-signal.SIGKILL, EXIT_FENCED)
        first = await scheduler.recv(wire.Results)
        [fenced] = first.results
        assert (fenced.error or "").startswith("self-fenced")
        assert worker.fenced == 1
        assert "(self-fencing)" in caplog.text
        later = await scheduler.recv(wire.Results)  # its replacement child is ready
        assert (later.results, first.credits + later.credits) == ([], 1)
    finally:
        worker.stop()
        worker.stop()
        await asyncio.wait_for(serving, 10)
        scheduler.sock.close()
