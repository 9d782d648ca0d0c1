"""A worker's bookkeeping in the dispatcher: Assign frames packed below the frame limit and
numbered, leases reconciled with heartbeats both ways, credits never beyond the slots,
overdue leases found."""

from __future__ import annotations

import msgspec
import pytest

from actors.scheduler.workerconn import FRAME_BUDGET_BYTES, WorkerConn, assignment_bytes, pack
from transport import protocol as wire


def assignment(job_id: int, token: int = 1, payload: int = 0, timeout: float | None = None):  # type: ignore[no-untyped-def]
    args = msgspec.Raw(wire.encode([b"x" * payload])) if payload else wire.EMPTY_ARGS
    return wire.Assignment(job_id, token, "t", args, wire.EMPTY_KWARGS, 1, timeout=timeout)


def test_the_size_estimate_is_never_below_the_encoded_size() -> None:
    parents = [wire.ParentResult(9, "étape", wire.pack("r" * 1000))]
    a = wire.Assignment(1, 1, "tâche", wire.pack([1, "two"]), wire.pack({"k": 3}), 2, "clé", 9.0)
    b = msgspec.structs.replace(a, parents=parents, step="étape", workflow_id=4)
    for x in (a, b, assignment(3, payload=100_000)):
        assert assignment_bytes(x) >= len(wire.encode(x))


def test_assignments_are_packed_into_frames_below_the_limit_in_order() -> None:
    quarter = wire.MAX_FRAME_BYTES // 4
    batch = [assignment(i, payload=quarter) for i in range(1, 11)]
    frames, oversize = pack(batch)
    assert oversize == []
    assert [a.job_id for frame in frames for a in frame] == list(range(1, 11))
    assert len(frames) == 4  # three quarters fit in one frame with its overhead, not four
    for frame in frames:
        assert len(wire.encode(wire.Assign(frame, 2**62, 1.0))) <= wire.MAX_FRAME_BYTES


def test_an_assignment_too_large_for_any_frame_is_set_apart() -> None:
    huge = assignment(2, payload=FRAME_BUDGET_BYTES)
    frames, oversize = pack([assignment(1), huge, assignment(3)])
    assert [[a.job_id for a in f] for f in frames] == [[1, 3]]
    assert oversize == [huge]


def test_each_frame_has_its_own_seq_and_the_lease_basis() -> None:
    worker = WorkerConn(b"w", "w", 8, ("default",))
    worker.lease_basis = 12.5
    first = worker.seq
    half = wire.MAX_FRAME_BYTES // 2
    frames, _ = worker.assign([assignment(1, payload=half), assignment(2, payload=half)], 6.0)
    assert [(f.seq, f.lease_basis) for f in frames] == [(first + 1, 12.5), (first + 2, 12.5)]
    assert worker.running == {1: 1, 2: 1}


def test_a_granted_lease_missing_from_heartbeats_after_its_frame_is_not_held() -> None:
    worker = WorkerConn(b"w", "w", 4, ("default",))
    [frame], _ = worker.assign([assignment(1), assignment(2)], 6.0)
    before = wire.Heartbeat([], 1.0, frame.seq - 1)  # sent before it processed the frame
    assert worker.reconcile(before) == ([], [])
    assert worker.reconcile(before) == ([], [])
    listed = wire.Heartbeat([(1, 1)], 2.0, frame.seq)
    assert worker.reconcile(listed) == ([], [])  # once: its result may be in flight
    assert worker.reconcile(listed) == ([(2, 1)], [])
    assert worker.end(2, 1)
    assert worker.reconcile(listed) == ([], [])


def test_a_result_between_two_heartbeats_ends_the_lease_before_it_is_found_missing() -> None:
    worker = WorkerConn(b"w", "w", 4, ("default",))
    [frame], _ = worker.assign([assignment(1)], 6.0)
    assert worker.reconcile(wire.Heartbeat([], 1.0, frame.seq)) == ([], [])
    assert worker.end(1, 1)  # the result arrives
    assert worker.reconcile(wire.Heartbeat([], 2.0, frame.seq)) == ([], [])


def test_a_heartbeat_naming_frames_never_sent_proves_nothing() -> None:
    worker = WorkerConn(b"w", "w", 4, ("default",))
    [frame], _ = worker.assign([assignment(1)], 6.0)
    for _ in range(3):
        assert worker.reconcile(wire.Heartbeat([], 1.0, frame.seq + 5)) == ([], [])


def test_leases_listed_but_not_granted_are_reported_and_claims_wait_for_adoption() -> None:
    worker = WorkerConn(b"w", "w", 4, ("default",))
    worker.claim([(5, 3)])
    [frame], _ = worker.assign([assignment(1)], 6.0)
    beat = wire.Heartbeat([(1, 1), (7, 2), (1, 1)], 1.0, frame.seq)
    for _ in range(2):  # the claim is not found missing while adoption is pending
        assert worker.reconcile(beat) == ([], [(7, 2)])
    worker.adopting.discard(5)  # adopted
    worker.reconcile(beat)
    assert worker.reconcile(beat)[0] == [(5, 3)]


def test_credits_plus_held_leases_never_exceed_the_slots() -> None:
    worker = WorkerConn(b"w", "w", 3, ("default",))
    assert worker.grant(3) == 3
    assert worker.grant(10_000) == 0, "a worker cannot free slots it has not used"
    worker.assign([assignment(1), assignment(2)], 6.0)
    assert worker.free == 1
    assert worker.grant(5) == 0
    worker.end(1, 1)
    assert worker.grant(5) == 1
    worker.withdraw()
    assert worker.grant(5) == 2  # one lease still held


def test_a_slot_freed_while_its_lease_is_still_counted_comes_back_when_the_lease_ends() -> None:
    """A worker drops an assignment it read too late and frees its slot at once; the lease
    is still counted until it is reclaimed (or revoked): then the slot is granted, once."""
    worker = WorkerConn(b"w", "w", 1, ("default",))
    assert worker.grant(1) == 1
    worker.assign([assignment(1)], 6.0)
    assert worker.grant(1) == 0, "the lease still holds the only slot"
    assert worker.end(1, 1)
    assert worker.release(1, available=True) == 1, "the slot the worker freed is offered again"
    assert worker.release(1, available=True) == 0, "and only once"
    worker.assign([assignment(2)], 6.0)
    assert worker.end(2, 1)  # a lease ended without the worker having freed anything
    assert worker.release(1, available=True) == 0
    assert worker.grant(5) == 1, "however much a worker claims, never beyond its slots"
    worker.assign([assignment(3)], 6.0)
    assert worker.end(3, 1)
    assert worker.release(1, available=True) == 0, "its claim beyond the slots was no free slot"


def test_a_slot_freed_while_the_worker_was_dead_is_counted_once_it_is_back() -> None:
    worker = WorkerConn(b"w", "w", 2, ("default",))
    assert worker.grant(2) == 2
    worker.assign([assignment(1), assignment(2)], 6.0)
    worker.withdraw()  # dead: the strategy forgets its credits
    worker.freed_while_away(1)  # it dropped job 1's assignment, unread in time
    assert worker.end(2, 1)  # job 2's result came while it was dead: its slot is room now
    worker.freed_while_away(1)
    assert worker.grant(worker.slots, claimed=False) == 1, "back alive: the room, job 2's"
    assert worker.end(1, 1)  # job 1's lease reclaimed
    assert worker.release(1, available=True) == 1, "the slot job 1's lease held back"
    assert worker.free == 2


def test_only_leases_still_held_past_timeout_lease_and_grace_are_overdue() -> None:
    worker = WorkerConn(b"w", "w", 4, ("default",))
    worker.assign([assignment(1, timeout=1.0), assignment(2, timeout=1.0), assignment(3)], 6.0)
    worker.end(2, 1)
    far = 10**12
    assert worker.overdue(0.0) == []
    assert worker.overdue(far) == [(1, 1)]
    assert worker.overdue(far) == []


def test_a_waiting_job_s_overdue_deadline_counts_from_the_heartbeat_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [100.0]
    monkeypatch.setattr("actors.scheduler.workerconn.time.monotonic", lambda: clock[0])
    worker = WorkerConn(b"w", "w", 4, ("default",))
    worker.assign([assignment(1, timeout=1.0), assignment(2, timeout=1.0), assignment(3)], 6.0)
    for beat in range(6):  # prefetched: jobs 1 and 3 still wait for a slot
        clock[0] = 100.0 + beat
        worker.postpone([1, 3], 6.0)
    assert len(worker.deadlines) == 2, "one deadline per job with a timeout, however many beats"
    assert worker.overdue(107.5) == [(2, 1)], "2 started at once: due 1 + 6 s after its lease"
    assert worker.overdue(111.9) == [], "1's first deadline (107) is void: it waited"
    assert worker.overdue(112.0) == [(1, 1)], "due 1 + 6 s after the heartbeat naming it"
    worker.assign([assignment(4, timeout=1.0)], 6.0)
    worker.postpone([4], 6.0)
    for job_id in (4, 1, 2):  # ended (the overdue ones by the dispatcher)
        assert worker.end(job_id, 1)
    assert worker.overdue(10**12) == []
    assert worker.postponed == {}, "forgotten with their leases"
    assert worker.timeouts == {}
