"""The dispatcher says when a cancelled job's handler has stopped (``StopsConfirmed``), so
its concurrency key's slot and its no-overlap schedule wait for that, not for the cancel:
a result under the revoked token, a heartbeat or a hello no longer listing it, or the
worker gone. A revoke whose lease had already ended confirms at once."""

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


async def test_a_heartbeat_confirms_the_stop_once_it_no_longer_lists_the_job() -> None:
    dispatcher, log = await running([1, 2])
    await turn(dispatcher, RevokeLease(b"w", 1, 2, "cancelled", confirm=True))
    await turn(dispatcher, FromWorker(b"w", wire.Heartbeat([(1, 2), (2, 2)], 1.0)))
    assert confirmed(log) == [], "still listed: still running"
    await turn(dispatcher, FromWorker(b"w", wire.Heartbeat([(2, 2)], 2.0)))
    assert confirmed(log) == [1]


async def test_a_hello_without_the_job_or_the_worker_gone_confirms_it() -> None:
    dispatcher, log = await running([1, 2, 3])
    for job_id in (1, 2):
        await turn(dispatcher, RevokeLease(b"w", job_id, 2, "cancelled", confirm=True))
    await turn(dispatcher, hello(4, [(2, 2), (3, 2)]))
    assert confirmed(log) == [1], "back without job 1; job 2 still claimed"
    await turn(dispatcher, Silent(b"w", "expired", 9.0))
    assert confirmed(log) == [1, 2], "gone past lease + grace: it has stopped it itself"


async def test_a_revoke_after_the_lease_ended_or_of_an_unknown_worker_confirms_at_once() -> None:
    dispatcher, log = await running([1])
    await turn(dispatcher, FromWorker(b"w", wire.Results([wire.JobResult(1, 2, True)])))
    await turn(dispatcher, RevokeLease(b"w", 1, 2, "cancelled", confirm=True))
    await turn(dispatcher, RevokeLease(b"gone", 5, 1, "cancelled", confirm=True))
    assert confirmed(log) == [1, 5]
    await turn(dispatcher, RevokeLease(b"gone", 6, 1, "cancelled"))
    assert confirmed(log) == [1, 5], "no confirmation asked"
