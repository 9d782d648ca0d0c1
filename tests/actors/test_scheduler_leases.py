"""The scheduler's side of leases and submissions, driven message by message with the store's
commits simulated: results that cannot be retried, leases a worker never held, adoption
by the same worker twice, jobs too large to send, jobs no connected worker can run."""

from __future__ import annotations

import time
from typing import Any

import msgspec

import strategies
from actors.config import SchedulerConfig
from actors.lifecycle import JobState
from actors.scheduler.jobs import JobTable
from actors.scheduler.leases import reclaim_orphans
from actors.scheduler.messages import (
    Adopted,
    Enqueue,
    FromClient,
    GateTick,
    LeasesEnded,
    Picked,
    ReadyJob,
    SetLimits,
    WorkerCredit,
    WorkerNames,
    WorkerResults,
    Write,
    Written,
)
from actors.scheduler.ops import Ops
from actors.scheduler.scheduler import Scheduler
from actors.scheduler.strategy import StrategyActor
from bench.timing import worst_window
from tests.actors.test_scheduler_commit_order import scheduler_with_log
from tests.helpers.recorder import Recorder
from transport import protocol as wire

PEER = b"w"


async def commit(scheduler: Scheduler, log: list[tuple[str, Any]]) -> None:
    """Answer every write the scheduler asked for, as the store would after its commit."""
    while writes := [m for who, m in log if who == "store" and isinstance(m, Write)]:
        log[:] = [(who, m) for who, m in log if not (who == "store" and isinstance(m, Write))]
        for write in writes:
            await scheduler.handle(Written([write.tag]))


def replies(log: list[tuple[str, Any]]) -> list[Any]:
    return [m.message for who, m in log if who == "gateway"]


async def running_job(scheduler: Scheduler, log: list[tuple[str, Any]], retries: int = 3) -> int:
    ops = Ops()
    job = scheduler.table.create(wire.JobSpec("t", max_retries=retries), ops)
    scheduler.table.move(job, JobState.QUEUED, ops)
    await scheduler.handle(Picked([(job.id, PEER)]))
    await commit(scheduler, log)
    assert job.status is JobState.RUNNING
    return job.id


async def test_a_result_that_says_do_not_retry_fails_the_job_at_once() -> None:
    scheduler, log = scheduler_with_log()
    job_id = await running_job(scheduler, log, retries=5)
    result = wire.JobResult(job_id, 1, False, error="TaskNotFound: t", retry=False)
    await scheduler.handle(WorkerResults([(PEER, "w", [result])]))
    await commit(scheduler, log)
    job = scheduler.table.jobs[job_id]
    assert (job.status, job.attempts, job.error) == (JobState.FAILED, 1, "TaskNotFound: t")


async def test_a_lease_the_worker_never_held_is_requeued_without_counting_an_attempt() -> None:
    scheduler, log = scheduler_with_log()
    job_id = await running_job(scheduler, log, retries=0)
    await scheduler.handle(LeasesEnded(PEER, "w", [(job_id, 1)], "unheld", "never started"))
    await commit(scheduler, log)
    job = scheduler.table.jobs[job_id]
    assert (job.status, job.attempts, job.token) == (JobState.QUEUED, 0, 1)
    await scheduler.handle(Picked([(job_id, PEER)]))
    await commit(scheduler, log)
    assert (job.status, job.attempts, job.token) == (JobState.RUNNING, 1, 2)
    log.clear()
    late = wire.JobResult(job_id, 1, True)
    await scheduler.handle(WorkerResults([(PEER, "w", [late])]))
    await commit(scheduler, log)
    [ack] = replies(log)
    assert ack.refused == [job_id], "the never-held lease's token is dead"


async def test_a_fenced_result_of_an_inherited_lease_costs_no_attempt() -> None:
    """A lease loaded RUNNING at start-up (granted by the process before a restart) whose
    worker stopped the job itself (no heartbeat acknowledged while no scheduler served):
    re-queued, its attempt recorded as interrupted and not counted. A fenced result of a
    lease this process granted is the worker's own trouble, and counts."""
    scheduler, log = scheduler_with_log()
    inherited = await running_job(scheduler, log, retries=0)
    mine = await running_job(scheduler, log, retries=0)
    scheduler.table.inherited[inherited] = 1  # as ``Recovery.admit`` records a loaded lease
    fenced = [
        wire.JobResult(job_id, 1, False, error="self-fenced: lease of 5s not renewed", fenced=True)
        for job_id in (inherited, mine)
    ]
    log.clear()
    await scheduler.handle(WorkerResults([(PEER, "w", fenced)]))
    [write] = [m for who, m in log if who == "store" and isinstance(m, Write)]
    await commit(scheduler, log)
    job = scheduler.table.jobs[inherited]
    assert (job.status, job.attempts, job.token) == (JobState.QUEUED, 0, 1)
    [row] = [a for a in write.ops.attempts if a[0] == inherited]
    assert (row[1], row[5]) == (1, "interrupted")
    assert "not counted" in row[6]
    assert scheduler.table.jobs[mine].status is JobState.FAILED
    assert inherited not in scheduler.table.inherited


async def orphan(retries: int) -> tuple[Scheduler, list[tuple[str, Any]], Any]:
    """A job loaded RUNNING at start-up, granted to worker "w", that no worker claimed."""
    scheduler, log = scheduler_with_log()
    job_id = await running_job(scheduler, log, retries=retries)
    job = scheduler.table.jobs[job_id]
    job.peer, job.worker = None, "w"
    scheduler.table.inherited[job_id] = 1
    log.clear()
    return scheduler, log, job


async def test_an_orphan_whose_worker_came_back_costs_no_attempt() -> None:
    """Its worker said hello again and did not hold it (dropped unstarted, or fenced)."""
    scheduler, log, job = await orphan(retries=0)
    scheduler.worker_names[b"again"] = "w"
    reclaim_orphans(scheduler)
    [write] = [m for who, m in log if who == "store" and isinstance(m, Write)]
    await commit(scheduler, log)
    assert (job.status, job.attempts, job.worker) == (JobState.QUEUED, 0, None)
    assert [(a[0], a[1], a[5]) for a in write.ops.attempts] == [(job.id, 1, "interrupted")]


async def test_an_orphan_whose_worker_never_came_back_counts_as_a_lost_worker() -> None:
    """A job that takes its worker and the scheduler down together (a host's memory
    limit) must not run for ever, uncounted, one restart after another."""
    scheduler, log, job = await orphan(retries=0)
    scheduler.worker_names[b"other"] = "v"
    reclaim_orphans(scheduler)
    [write] = [m for who, m in log if who == "store" and isinstance(m, Write)]
    await commit(scheduler, log)
    assert (job.status, job.attempts) == (JobState.FAILED, 1)
    assert [(a[0], a[1], a[5]) for a in write.ops.attempts] == [(job.id, 1, "lost")]


async def test_a_fence_a_lease_after_its_adoption_counts() -> None:
    """Adopted across the restart, then fenced a lease or more later: this scheduler was
    there all along, so the worker (or its job) is to blame, as for any lease."""
    scheduler, log = scheduler_with_log()
    job_id = await running_job(scheduler, log, retries=0)
    scheduler.table.inherited[job_id] = 1
    scheduler.table.adopted_at[job_id] = time.monotonic() - 2 * scheduler.table.config.lease
    fenced = wire.JobResult(job_id, 1, False, error="self-fenced: lease of 5s", fenced=True)
    await scheduler.handle(WorkerResults([(PEER, "w", [fenced])]))
    await commit(scheduler, log)
    assert scheduler.table.jobs[job_id].status is JobState.FAILED


async def test_an_end_for_a_lease_no_longer_current_changes_nothing() -> None:
    scheduler, log = scheduler_with_log()
    job_id = await running_job(scheduler, log)
    await scheduler.handle(LeasesEnded(PEER, "w", [(job_id, 7)], "unheld", "stale"))
    await scheduler.handle(LeasesEnded(b"other", "o", [(job_id, 1)], "lost", "other"))
    await commit(scheduler, log)
    assert scheduler.table.jobs[job_id].status is JobState.RUNNING


async def test_the_same_worker_claiming_a_lease_twice_is_accepted_twice() -> None:
    table = JobTable(SchedulerConfig())
    ops = Ops()
    job = table.create(wire.JobSpec("t"), ops)
    table.move(job, JobState.QUEUED, ops)
    table.lease(job.id, PEER, "w", ops)
    job.peer = None  # as recovered from SQLite after a restart
    assert table.adopt(job.id, 1, PEER, "w")
    assert table.adopt(job.id, 1, PEER, "w"), "a repeated hello is no conflict"
    assert not table.adopt(job.id, 1, b"other", "o"), "another worker cannot take it"
    assert not table.adopt(job.id, 2, PEER, "w")


async def test_a_worker_claiming_again_on_a_new_connection_takes_its_lease_over() -> None:
    """After a takeover a worker searching for the leader may leave a hello behind on a
    connection it then gives up (the new leader was still loading), and come back on
    another: that stale hello must not keep the lease from the live connection, or the
    worker's result is refused and the job runs again."""
    table = JobTable(SchedulerConfig())
    ops = Ops()
    job = table.create(wire.JobSpec("t"), ops)
    table.move(job, JobState.QUEUED, ops)
    table.lease(job.id, PEER, "w", ops)
    job.peer = None  # as recovered after a takeover
    assert table.adopt(job.id, 1, PEER, "w"), "the hello left on the abandoned connection"
    assert table.adopt(job.id, 1, b"again", "w"), "the same worker, reconnected"
    assert table.holder_of(job.id, 1, b"again") is job
    assert table.holder_of(job.id, 1, PEER) is None
    assert not table.adopt(job.id, 1, b"other", "o"), "another worker still cannot take it"


async def test_adoption_answers_the_dispatcher_with_the_verdicts() -> None:
    scheduler, log = scheduler_with_log()
    job_id = await running_job(scheduler, log)
    job = scheduler.table.jobs[job_id]
    job.peer, job.worker = None, "w"  # as loaded after a restart: leased to worker w
    log.clear()
    from actors.scheduler.messages import Adopt

    await scheduler.handle(Adopt(b"other", "impostor", [(job_id, 1)]))
    await scheduler.handle(Adopt(PEER, "w", [(job_id, 1), (999, 1)]))
    await scheduler.handle(Adopt(PEER, "w", [(job_id, 1)]))
    verdicts = [(m.accepted, m.refused) for _, m in log if isinstance(m, Adopted)]
    assert verdicts == [
        ([], [(job_id, 1)]),  # another worker's name: refused, even with the right token
        ([(job_id, 1)], [(999, 1)]),
        ([(job_id, 1)], []),
    ]


async def test_a_job_whose_arguments_could_never_be_sent_is_refused_at_submit() -> None:
    scheduler, log = scheduler_with_log()
    big = msgspec.Raw(wire.encode(["x" * wire.MAX_JOB_PAYLOAD_BYTES]))
    jobs = [wire.JobSpec("t"), wire.JobSpec("t", args=big)]
    await scheduler.handle(FromClient(b"c", wire.Submit(41, jobs)))
    [error] = replies(log)
    assert (error.code, error.request_id) == ("too_large", 41)
    assert "job #1" in error.message
    assert sum(scheduler.table.counts.values()) == 0, "nothing was created"


async def test_a_child_whose_parents_results_cannot_travel_with_it_fails_at_once() -> None:
    scheduler, log = scheduler_with_log()
    parents = []
    for _ in range(2):
        job_id = await running_job(scheduler, log)
        payload = wire.pack("r" * (wire.MAX_FRAME_BYTES // 2))
        await scheduler.handle(
            WorkerResults([(PEER, "w", [wire.JobResult(job_id, 1, True, payload)])])
        )
        await commit(scheduler, log)
        parents.append(job_id)
    log.clear()
    await scheduler.handle(
        FromClient(b"c", wire.Submit(5, [wire.JobSpec("t", depends_on=parents)]))
    )
    await commit(scheduler, log)
    [submitted] = replies(log)
    [child_id] = submitted.job_ids
    child = scheduler.table.jobs[child_id]
    assert child.status is JobState.FAILED
    assert "parents' results" in (child.error or "")


async def test_require_worker_refuses_a_job_no_available_worker_can_run() -> None:
    scheduler, log = scheduler_with_log()
    request = wire.Submit(3, [wire.JobSpec("billing.invoice")], require_worker=True)
    await scheduler.handle(FromClient(b"c", request))
    await scheduler.handle(WorkerNames(PEER, "w", frozenset({"mail.send"})))
    await scheduler.handle(FromClient(b"c", request))
    await scheduler.handle(WorkerNames(b"v", "v", frozenset({"billing.invoice"})))
    await scheduler.handle(FromClient(b"c", request))
    await commit(scheduler, log)
    await scheduler.handle(WorkerNames(b"v", "v", frozenset({"billing.invoice"}), available=False))
    await scheduler.handle(FromClient(b"c", request))
    first, second, accepted, gone = replies(log)
    assert (first.code, first.request_id) == ("no_worker", 3)
    assert "'billing.invoice'" in first.message
    assert "none" in first.message
    assert second.code == "no_worker"
    assert "mail.send" in second.message
    assert isinstance(accepted, wire.Submitted)
    assert gone.code == "no_worker"


async def test_a_batch_repeating_a_jobs_result_counts_the_first_whatever_the_outcomes() -> None:
    """A worker's Results frame naming one lease twice (a buggy or hostile worker key): the
    first result counts and the second is refused, for a success then a failure as for a
    failure then a success; the scheduler keeps serving."""
    scheduler, log = scheduler_with_log()
    first = await running_job(scheduler, log, retries=5)
    second = await running_job(scheduler, log, retries=5)
    log.clear()
    batch = [
        wire.JobResult(first, 1, True, wire.pack("ok")),
        wire.JobResult(first, 1, False, error="boom", retry=True),
        wire.JobResult(second, 1, False, error="boom", retry=True),
        wire.JobResult(second, 1, True, wire.pack("ok")),
    ]
    await scheduler.handle(WorkerResults([(PEER, "w", batch)]))
    await commit(scheduler, log)
    [ack] = replies(log)
    assert ack.refused == [first, second]
    assert scheduler.table.jobs[first].status is JobState.SUCCEEDED
    assert scheduler.table.jobs[second].status is not JobState.SUCCEEDED
    assert scheduler.table.jobs[second].error == "boom"


async def test_a_rate_limits_recorded_starts_keep_its_bound_however_late_the_lease() -> None:
    """A job's recorded start (``started_at``) is when its token was taken, not when the
    scheduler wrote its lease a moment later: else a burst leased 50 ms late and the next
    token's job leased at once read as four starts in 50 ms under 10/s with a burst of 3
    (found under load by tests/e2e/test_declared_limits.py: half a millisecond sufficed)."""
    scheduler, log = scheduler_with_log()
    strategy = StrategyActor(strategies.create("fifo"))
    proposed: list[tuple[str, Any]] = []
    strategy.scheduler = Recorder("scheduler", proposed)
    t0 = now = 1_796_100_000.0  # Unix-time magnitudes, as in production
    lag = 0.05  # how late the scheduler gets to the first proposal
    strategy.strategy.gates.clock = lambda: now
    scheduler.table.clock = lambda: now + lag
    ops, ready = Ops(), []
    for _ in range(6):
        job = scheduler.table.create(wire.JobSpec("t"), ops)
        scheduler.table.move(job, JobState.QUEUED, ops)
        ready.append(ReadyJob(job.id, 0, "default", job.id, 0.0, task="t"))
    await strategy.handle(SetLimits([("t", 10, 1.0, 3, None)]))
    await strategy.handle(WorkerCredit(PEER, "w", ("default",), 10, 10))
    for message in (Enqueue(ready), GateTick(), GateTick(), GateTick()):
        await strategy.handle(message)
        strategy.on_idle()
        for _, picks in proposed:
            await scheduler.handle(picks)
            lag = 0.0  # the later ones at once
        proposed.clear()
        now += 0.1  # a token every 0.1 s
    await commit(scheduler, log)
    starts = [job.started_at or 0.0 for job in scheduler.table.jobs.values()]
    assert len(starts) == 6
    assert worst_window(starts, 10, 1.0, 3)[0] <= 0, [round(s - t0, 3) for s in starts]


async def test_a_cancelled_unclaimed_inherited_lease_holds_its_stop_until_the_reclaim() -> None:
    """Cancelled before its worker claimed it after a restart: no worker can be told to
    stop it, and its handler may run until lease + grace; its stop (a key's slot, a
    no-overlap schedule) is held until then, not freed by the cancel."""
    scheduler, log, job = await orphan(retries=0)
    await scheduler.handle(FromClient(b"client", wire.CancelJobs(7, [job.id])))
    await commit(scheduler, log)
    assert job.status is JobState.CANCELLED
    assert job.id in scheduler.table.stopping
    assert not [m for who, m in log if who == "dispatcher"], "no worker to revoke it from"
    reclaim_orphans(scheduler)
    assert job.id not in scheduler.table.stopping
