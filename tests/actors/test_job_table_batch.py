"""The job table's batch forms (issue 19): ``create_all``, ``move_all``, ``lease_all``,
``succeed_all``, ``settle_all`` do what the per-job methods do, job for job, counting
once per batch, and ``move_all`` checks every transition before it moves any job."""

from __future__ import annotations

import sys

import msgspec
import pytest

from actors.config import SchedulerConfig
from actors.errors import IllegalTransition
from actors.lifecycle import CANCELLED, PENDING, QUEUED, RUNNING, SUCCEEDED
from actors.scheduler.job import NAMES_KEPT, NO_ARGS, NO_KWARGS, Job, SharedNames
from actors.scheduler.jobs import JobTable
from actors.scheduler.ops import Ops
from tests.helpers.job_rows import stored_job
from transport import protocol as wire


def table() -> JobTable:
    return JobTable(SchedulerConfig(), clock=lambda: 1000.0, rand=lambda: 1.0)


def test_create_all_matches_create_one_by_one() -> None:
    specs = [
        wire.JobSpec("a", queue="q1"),
        wire.JobSpec("b", queue="q2", idempotency_key="k", delay=5.0),
        wire.JobSpec("c", queue="q1", depends_on=[1, 2], args=wire.pack([1, 2])),
    ]
    batched, single = table(), table()
    ops_b, ops_s = Ops(), Ops()
    jobs = batched.create_all(specs, ops_b, owner="me")
    for spec in specs:
        single.create(spec, ops_s, owner="me")
    assert [j.id for j in jobs] == [1, 2, 3]
    assert batched.jobs == single.jobs
    assert batched.by_key == single.by_key == {"k": 2}
    assert batched.counts == single.counts
    assert batched.by_queue == single.by_queue
    assert batched.held.of("me") == single.held.of("me") == (3, 3 + len(wire.pack([1, 2])) + 2)
    assert ops_b.edges == ops_s.edges == [(1, 3), (2, 3)]
    assert ops_b.new_ids == ops_s.new_ids == {1, 2, 3}
    assert jobs[0].depends_on == ()
    assert jobs[1].not_before == 1005.0
    assert batched.next_id == 4
    assert batched.create_all([], Ops()) == []


def test_move_all_counts_once_and_records_each_row_and_event() -> None:
    t = table()
    t.events = []
    ops = Ops()
    jobs = t.create_all([wire.JobSpec("a", queue=q) for q in ("x", "x", "y")], ops)
    t.move_all(jobs, QUEUED, ops)
    assert ops.updates == [], "jobs created in this write are inserted as they are"
    assert t.counts[QUEUED] == 3
    assert t.counts[PENDING] == 0
    later = Ops()
    t.lease_all([(j.id, b"p") for j in jobs], {b"p": "w"}, later)
    assert [row[-1] for row in later.updates] == [QUEUED] * 3
    t.succeed_all([(j, wire.NONE_RAW) for j in jobs], later)
    assert t.counts[SUCCEEDED] == 3
    assert t.counts[RUNNING] == 0
    assert t.by_queue[("x", "succeeded")] == 2
    assert t.by_queue[("y", "succeeded")] == 1
    assert [(e[1], e[2]) for e in t.take_events()][-3:] == [(j.id, SUCCEEDED) for j in jobs]


def test_move_all_checks_every_state_it_leaves_before_moving_any() -> None:
    t = table()
    ops = Ops()
    jobs = t.create_all([wire.JobSpec("a"), wire.JobSpec("b")], ops)
    t.move(jobs[1], QUEUED, ops)
    before = dict(t.counts)
    with pytest.raises(IllegalTransition):
        t.move_all(jobs, RUNNING, ops)  # PENDING -> RUNNING is not in the table
    assert [j.status for j in jobs] == [PENDING, QUEUED], "nothing moved"
    assert dict(t.counts) == before


def test_move_all_of_mixed_states_moves_each_by_its_own_transition() -> None:
    t = table()
    ops = Ops()
    jobs = t.create_all([wire.JobSpec("a"), wire.JobSpec("b")], ops)
    t.move(jobs[1], QUEUED, ops)
    t.move_all(jobs, CANCELLED, ops)
    assert t.counts["CANCELLED"] == 2
    assert t.counts[PENDING] == 0
    assert t.counts[QUEUED] == 0
    assert t.by_queue[("default", "cancelled")] == 2


def test_lease_all_skips_jobs_not_queued_and_a_job_picked_twice() -> None:
    t = table()
    ops = Ops()
    jobs = t.create_all([wire.JobSpec("a"), wire.JobSpec("b"), wire.JobSpec("c")], ops)
    t.move_all(jobs[:2], QUEUED, ops)
    leased, returned = t.lease_all(
        [(1, b"p"), (2, b"q"), (1, b"q"), (3, b"p"), (99, b"p")], {b"p": "wp"}, Ops()
    )
    assert [(peer, a.job_id, a.token, a.attempt) for peer, a in leased] == [
        (b"p", 1, 1, 1),
        (b"q", 2, 1, 1),
    ]
    assert returned == [(1, b"q"), (3, b"p"), (99, b"p")]
    assert jobs[0].worker == "wp"
    assert jobs[1].worker == "?"
    assert t.counts[RUNNING] == 2
    assert t.lease(1, b"p", "wp", Ops()) is None


def test_settle_all_releases_each_owner_once_and_keeps_the_recent_window() -> None:
    t = table()
    ops = Ops()
    mine = t.create_all([wire.JobSpec("a")] * 3, ops, owner="me")
    theirs = t.create_all([wire.JobSpec("a")] * 2, ops, owner="them")
    everyone = mine + theirs
    t.move_all(everyone, QUEUED, ops)
    t.lease_all([(j.id, b"p") for j in everyone], {}, ops)
    t.succeed_all([(j, wire.NONE_RAW) for j in everyone], ops)
    t.settle_all(everyone[:4])
    assert t.held.of("me") == (0, 0)
    assert t.held.of("them") == (1, 2)
    t.settle_all(everyone)  # settling again releases nothing twice
    assert t.held.of("them") == (0, 0)
    assert all(j.settled and j.peer is None for j in everyone)


def test_jobs_share_their_names_and_the_empty_arguments_not_their_decoded_copies() -> None:
    """A queued job's memory (issue 19, the 1M-job backlog): decoded jobs naming the same
    task and queue hold one copy of each name, and no-argument jobs the shared constants."""
    frame = wire.encode(wire.Submit(1, [wire.JobSpec("send", queue="mail")] * 3))
    decoded = wire.decode_request(frame)
    assert isinstance(decoded, wire.Submit)
    specs = decoded.jobs
    assert specs[0].task is not specs[1].task, "the decoder copies each name"
    jobs = table().create_all(specs, Ops())
    assert all(j.task is jobs[0].task and j.queue is jobs[0].queue for j in jobs)
    assert (bytes(wire.EMPTY_ARGS), bytes(wire.EMPTY_KWARGS)) == (NO_ARGS, NO_KWARGS)
    assert all(j.args is NO_ARGS and j.kwargs is NO_KWARGS for j in jobs)
    with_args = table().create_all([wire.JobSpec("send", args=wire.pack([1]))], Ops())[0]
    assert with_args.args == bytes(wire.pack([1]))
    assert with_args.args is not NO_ARGS


def test_a_queued_job_does_not_keep_its_request_frame_alive() -> None:
    """A decoded job's arguments are views of the whole request frame; a queued job keeps
    bytes of its own instead (issue 19: about 110 bytes per job of a 1M backlog)."""
    frame = wire.encode(wire.Submit(1, [wire.JobSpec("t", args=wire.pack([n])) for n in range(3)]))
    alone = sys.getrefcount(frame)
    decoded = wire.decode_request(frame)
    assert isinstance(decoded, wire.Submit)
    assert sys.getrefcount(frame) > alone, "the decoded arguments view the frame"
    jobs = table().create_all(decoded.jobs, Ops())
    del decoded
    assert sys.getrefcount(frame) == alone
    assert [wire.unpack(msgspec.Raw(j.args)) for j in jobs] == [[0], [1], [2]]


def test_jobs_read_back_from_the_store_share_their_names_and_empty_arguments() -> None:
    """A restarted scheduler or a new leader loads its whole backlog from the store, every
    row with its own copies of the task's and queue's names and of ``[]`` and ``{}``: the
    table keeps one of each, shared with the jobs submitted to it later."""

    def read_back(job_id: int) -> Job:  # fresh objects, as a database driver returns them
        return stored_job(
            job_id,
            QUEUED,
            task="".join(["send", "_mail"]),
            queue="".join("mail"),
            args=bytes(bytearray(NO_ARGS)),
            kwargs=bytes(bytearray(NO_KWARGS)),
        )

    loaded = [read_back(1), read_back(2)]
    assert loaded[0].task is not loaded[1].task
    assert loaded[0].args is not NO_ARGS
    with_args = stored_job(3, QUEUED, args=bytes(wire.pack([1])))
    t = table()
    t.load([*loaded, with_args], {"QUEUED": 3}, 3)
    assert all(j.task is loaded[0].task and j.queue is loaded[0].queue for j in loaded)
    assert all(j.args is NO_ARGS and j.kwargs is NO_KWARGS for j in loaded)
    assert with_args.args == bytes(wire.pack([1]))
    later = t.create_all([wire.JobSpec("send_mail", queue="mail")], Ops())[0]
    assert later.task is loaded[0].task
    assert later.queue is loaded[0].queue


def test_the_shared_names_are_bounded_and_stay_correct_past_the_bound() -> None:
    names = SharedNames()
    for n in range(NAMES_KEPT + 5):
        assert names(f"task-{n}") == f"task-{n}"
    assert len(names) <= NAMES_KEPT
    assert names("task-3") == "task-3"
