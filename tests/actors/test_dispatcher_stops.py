"""The dispatcher says when a cancelled job's handler has stopped (``StopsConfirmed``), so
its concurrency key's slot and its no-overlap schedule wait for that, not for the cancel:
a result under the revoked token, a heartbeat written after the Assign that granted it no
longer listing it, or the worker gone. A revoke whose lease had already ended confirms at
once."""

from __future__ import annotations

from actors.scheduler.messages import FromWorker, Leased, RevokeLease, Silent, StopsConfirmed
from tests.actors.test_dispatcher_batching import dispatcher_with_log, turn
from tests.actors.test_dispatcher_leases import assignment, hello, told
from transport import protocol as wire


def confirmed(log: list[tuple[str, object]]) -> list[int]:
    return [i for m in told(log, "scheduler", StopsConfirmed) for i in m.job_ids]


async def running(job_ids: list[int]) -> tuple[object, list[tuple[str, object]]]:
    dispatcher, log = dispatcher_with_log()
    await turn(dispatcher, hello(4))
    await turn(dispatcher, Leased([(b"w", assignment(i, 2)) for i in job_ids]))
    log.clear()
    return dispatcher, log


async def test_a_revoked_lease_is_confirmed_by_its_result_only_under_its_token() -> None:
    dispatcher, log = await running([1, 2])
    await turn(dispatcher, RevokeLease(b"w", 1, 2, "cancelled", confirm=True))
    assert wire.StopJob(1, 2, "cancelled") in [m.message for _, m in log if hasattr(m, "message")]
    assert confirmed(log) == [], "its handler may still run"
    stale = wire.JobResult(1, 1, False, error="stopped")
    await turn(dispatcher, FromWorker(b"w", wire.Results([stale])))
    assert confirmed(log) == [], "a result under another token says nothing of this one"
    ended = wire.JobResult(1, 2, False, error="cancelled")
    await turn(dispatcher, FromWorker(b"w", wire.Results([ended])))
    assert confirmed(log) == [1]
    await turn(dispatcher, FromWorker(b"w", wire.Results([ended])))
    assert confirmed(log) == [1], "once"


async def test_a_heartbeat_written_after_the_assign_confirms_the_stop_once_it_omits_it() -> None:
    dispatcher, log = await running([1, 2])
    seq = dispatcher.workers[b"w"].seq  # the Assign frame that granted both
    await turn(dispatcher, RevokeLease(b"w", 1, 2, "cancelled", confirm=True))
    await turn(dispatcher, FromWorker(b"w", wire.Heartbeat([(1, 2), (2, 2)], 1.0, seq)))
    assert confirmed(log) == [], "still listed: still running"
    # Written before the worker read that Assign: it may yet start the job.
    await turn(dispatcher, FromWorker(b"w", wire.Heartbeat([], 2.0, seq - 1)))
    await turn(dispatcher, FromWorker(b"w", wire.Heartbeat([], 2.5, seq + 5)))  # never sent
    assert confirmed(log) == [], "a heartbeat from before the Assign proves nothing"
    await turn(dispatcher, FromWorker(b"w", wire.Heartbeat([(2, 2)], 3.0, seq)))
    assert confirmed(log) == [1]


async def test_a_hello_proves_nothing_and_the_worker_gone_confirms_every_stop() -> None:
    dispatcher, log = await running([1, 2, 3])
    for job_id in (1, 2):
        await turn(dispatcher, RevokeLease(b"w", job_id, 2, "cancelled", confirm=True))
    await turn(dispatcher, hello(4, [(2, 2), (3, 2)]))
    assert confirmed(log) == [], "a hello says nothing of Assign frames it read"
    await turn(dispatcher, Silent(b"w", "expired", 9.0))
    assert sorted(confirmed(log)) == [1, 2], "gone past lease + grace: it stopped them itself"


async def test_a_revoke_after_the_lease_ended_or_of_an_unknown_worker_confirms_at_once() -> None:
    dispatcher, log = await running([1])
    await turn(dispatcher, FromWorker(b"w", wire.Results([wire.JobResult(1, 2, True)])))
    await turn(dispatcher, RevokeLease(b"w", 1, 2, "cancelled", confirm=True))
    await turn(dispatcher, RevokeLease(b"gone", 5, 1, "cancelled", confirm=True))
    assert confirmed(log) == [1, 5]
    await turn(dispatcher, RevokeLease(b"gone", 6, 1, "cancelled"))
    assert confirmed(log) == [1, 5], "no confirmation asked"
