"""What the scheduler does once a commit is durable, and in which order."""

from __future__ import annotations

from typing import Any

import msgspec

from actors.config import SchedulerConfig
from actors.lifecycle import JobState
from actors.scheduler.effects import Effects
from actors.scheduler.jobs import JobTable
from actors.scheduler.messages import Finished, Leased, RevokeLease, Send, Written
from actors.scheduler.ops import Ops
from actors.scheduler.scheduler import Scheduler
from tests.helpers.recorder import Recorder
from transport import protocol as wire


def scheduler_with_log() -> tuple[Scheduler, list[tuple[str, Any]]]:
    log: list[tuple[str, Any]] = []
    scheduler = Scheduler(JobTable(SchedulerConfig()))
    scheduler.connect(
        gateway=Recorder("gateway", log),
        store=Recorder("store", log),
        strategy=Recorder("strategy", log),
        dispatcher=Recorder("dispatcher", log),
        dag=Recorder("dag", log),
    )
    scheduler.events = Recorder("events", log)
    return scheduler, log


def lease(job_id: int, token: int) -> tuple[bytes, wire.Assignment]:
    raw = msgspec.Raw(b"\x90")
    return b"w", wire.Assignment(job_id, token, "t", raw, raw, token)


def reply(request_id: int) -> Send:
    return Send(b"client", wire.Submitted(request_id, [request_id]))


async def test_leases_of_a_whole_commit_go_to_the_dispatcher_before_any_reply() -> None:
    scheduler, log = scheduler_with_log()
    first = Effects(sends=[reply(1)])
    second = Effects(sends=[reply(2)], leases=[lease(1, 1)])
    third = Effects(leases=[lease(2, 1)])
    await scheduler.handle(Written([first, second, third]))
    assert [(who, type(m).__name__) for who, m in log] == [
        ("dispatcher", "Leased"),
        ("gateway", "Send"),
        ("gateway", "Send"),
    ]
    leased = log[0][1]
    assert isinstance(leased, Leased)
    assert [a.job_id for _, a in leased.leases] == [1, 2], "one Leased for the commit, in order"
    assert [m.message.request_id for who, m in log[1:]] == [1, 2], "replies keep their order"


async def test_a_revoke_stays_after_the_leases_committed_before_it_and_before_later_ones() -> None:
    # Job 1 leased under token 1, then cancelled (revoke token 1), then job 1 re-leased
    # under token 2, all in one commit: the dispatcher must see them in that order.
    scheduler, log = scheduler_with_log()
    revoke = RevokeLease(b"w", 1, 1, "cancelled")
    committed = [
        Effects(leases=[lease(1, 1)]),
        Effects(revokes=[revoke]),
        Effects(leases=[lease(1, 2)]),
    ]
    await scheduler.handle(Written(committed))
    to_dispatcher = [m for who, m in log if who == "dispatcher"]
    assert len(to_dispatcher) == 3
    first, middle, last = to_dispatcher
    assert isinstance(first, Leased)
    assert first.leases[0][1].token == 1
    assert middle is revoke
    assert isinstance(last, Leased)
    assert last.leases[0][1].token == 2


async def test_a_job_ended_by_two_writes_of_one_commit_is_reported_once() -> None:
    # e.g. a failed attempt put it back to PENDING, then a cancel in the same group commit
    scheduler, log = scheduler_with_log()
    ops = Ops()
    job = scheduler.table.create(wire.JobSpec("t"), ops)
    scheduler.table.move(job, JobState.QUEUED, ops)
    scheduler.table.move(job, JobState.CANCELLED, ops)
    scheduler.waiters[job.id] = ((b"client", 9),)
    await scheduler.handle(Written([Effects(finished=[job]), Effects(finished=[job])]))
    outcomes = [m.message for who, m in log if who == "gateway"]
    assert [type(o).__name__ for o in outcomes] == ["Outcomes"]
    assert [o.job_id for o in outcomes[0].outcomes] == [job.id]
    [finished] = [m for who, m in log if who == "dag"]
    assert isinstance(finished, Finished)
    assert finished.jobs == [(job.id, "CANCELLED")]
