"""One connected worker as the dispatcher sees it: its leases, its credits, its Assign frames.

Plain bookkeeping with no I/O (the dispatcher actor does the sending), so each rule is
testable on its own:

- ``running``: every lease granted to (or adopted from) the worker and not yet ended by
  a result, job id -> fencing token.
- Assign frames are numbered per connection (``seq``); each lease remembers the frame
  that granted it. A heartbeat says which frame the worker had processed when it was
  sent (``assign_seq``), so a lease granted in that frame or before and not listed is
  not held: the worker never got it, or dropped it as stale. :meth:`reconcile` finds
  those (and the leases the worker lists that it was never granted).
- Credits: slots the strategy may still fill for this worker (``free``). ``free`` plus
  the leases held never exceed the worker's slots, whatever the worker claims to free.
- Frames are packed below ``MAX_FRAME_BYTES``, so no frame corral builds is refused by
  the worker's size check (which would strand its jobs RUNNING).
- Deadlines: a lease with a timeout whose result is overdue by lease + grace is found by
  :meth:`overdue` (the worker should have reported the timeout long before).
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from actors.scheduler.messages import WorkerCredit
from transport import protocol as wire

# A worker sends progress at most 4 times a second (it coalesces); frames closer than
# this are dropped, so a misbehaving worker cannot flood the scheduler.
PROGRESS_MIN_INTERVAL_S = 0.1

# Bytes an assignment takes besides its payloads and strings: ints, flags, msgpack
# headers (about 40 in practice), rounded up.
ASSIGNMENT_OVERHEAD_BYTES = 64
PARENT_OVERHEAD_BYTES = 32
# Room for the Assign frame's own fields (tag, seq, lease basis, array header).
FRAME_OVERHEAD_BYTES = 1024
FRAME_BUDGET_BYTES = wire.MAX_FRAME_BYTES - FRAME_OVERHEAD_BYTES


def _first_seq() -> int:
    """Where a connection's Assign numbering starts: microseconds since the epoch.

    A worker echoes the seq of the last Assign it processed. After a scheduler restart it
    may still echo a number from the previous process until it gets a frame of the new
    one; starting every connection above any number an earlier connection can have used
    (one frame per microsecond is far beyond any real rate) makes such an echo read as
    "processed none of this connection's frames", never as "processed all of them"."""
    return time.time_ns() // 1000


def _text_bytes(text: str | None) -> int:
    if not text:
        return 0
    return len(text) if text.isascii() else len(text.encode())


def assignment_bytes(a: wire.Assignment) -> int:
    """An upper estimate of the encoded size of one assignment, without encoding it."""
    size = len(a.args) + len(a.kwargs) + ASSIGNMENT_OVERHEAD_BYTES
    size += _text_bytes(a.task) + _text_bytes(a.idempotency_key) + _text_bytes(a.step)
    for parent in a.parents:
        size += len(parent.result) + _text_bytes(parent.step) + PARENT_OVERHEAD_BYTES
    return size


def pack(
    assignments: list[wire.Assignment], budget: int = FRAME_BUDGET_BYTES
) -> tuple[list[list[wire.Assignment]], list[wire.Assignment]]:
    """Split assignments into frames of at most ``budget`` bytes each, in order; those
    too large to travel even alone are returned apart (the second list)."""
    frames: list[list[wire.Assignment]] = []
    oversize: list[wire.Assignment] = []
    current: list[wire.Assignment] = []
    used = 0
    for a in assignments:
        size = assignment_bytes(a)
        if size > budget:
            oversize.append(a)
            continue
        if current and used + size > budget:
            frames.append(current)
            current, used = [], 0
        current.append(a)
        used += size
    if current:
        frames.append(current)
    return frames, oversize


@dataclass(slots=True)
class WorkerConn:
    peer: bytes
    name: str
    slots: int
    queues: tuple[str, ...]
    tasks: frozenset[str] = frozenset()
    state: str = "alive"
    prefetch: int = 0  # of ``slots``, those announced for prefetched jobs (status only)
    running: dict[int, int] = field(default_factory=dict)  # job id -> token
    granted_in: dict[int, int] = field(default_factory=dict)  # job id -> seq that granted it
    missing: set[int] = field(default_factory=set)  # granted, not listed by one heartbeat
    adopting: set[int] = field(default_factory=set)  # claimed at hello, verdict pending
    # Revoked leases (cancelled jobs) whose stop the scheduler waits to hear of: job id ->
    # (token, the seq of the Assign that granted it). Ended when a result names it, a
    # heartbeat written after that Assign stops listing it, or the worker goes.
    stopping: dict[int, tuple[int, int]] = field(default_factory=dict)
    free: int = 0  # credits the strategy holds for this worker
    # Slots the worker said were free while we still counted a lease on them: a lease it
    # dropped unstarted (read too late) or never got. Granted when that lease ends
    # without a result (reclaimed, revoked, refused), so no slot is lost for good.
    excess: int = 0
    seq: int = field(default_factory=_first_seq)  # the last Assign seq sent
    lease_basis: float = 0.0  # newest worker-clock sent_at heard (heartbeat or hello)
    deadlines: list[tuple[float, int, int]] = field(default_factory=list)  # heap
    timeouts: dict[int, float] = field(default_factory=dict)  # job id -> timeout, if it has one
    # Deadlines moved later by heartbeats naming the job as waiting (``postpone``): its heap
    # entry, when due, is pushed again with this one. One entry per job, however many beats.
    postponed: dict[int, float] = field(default_factory=dict)
    progress: dict[int, tuple[float, str]] = field(default_factory=dict)  # job -> latest report
    progress_at: float = 0.0
    last_seen: float = field(default_factory=time.monotonic)

    # ------------------------------------------------------------------ stops

    def revoke(self, job_id: int, token: int, await_stop: bool) -> bool:
        """``end`` for a lease revoked without a result; ``await_stop``: its handler may run
        on until the worker stops it, so keep it in ``stopping`` (with the Assign that
        granted it) until ``confirmed``. False if the lease was not held."""
        granted = self.granted_in.get(job_id, 0)
        if not self.end(job_id, token):
            return False
        if await_stop:
            self.stopping[job_id] = (token, granted)
        return True

    def confirmed(self, beat: wire.Heartbeat | None) -> list[int]:
        """Of the revoked leases awaiting their stop, those now ended: not listed by
        ``beat``, written after the Assign that granted them (an earlier one proves
        nothing: the worker may not have read that Assign yet), or all (``None``: gone)."""
        if not self.stopping:
            return []
        if beat is None:
            ended = list(self.stopping)
        elif beat.assign_seq > self.seq:
            return []  # names frames never sent: proves nothing
        else:
            still = {job_id for job_id, _ in beat.leases}
            ended = [
                job_id
                for job_id, (_, granted) in self.stopping.items()
                if job_id not in still and granted <= beat.assign_seq
            ]
        for job_id in ended:
            del self.stopping[job_id]
        return ended

    def result_for(self, job_id: int, token: int) -> bool:
        """A result names a revoked lease awaiting its stop: the handler has ended."""
        held = self.stopping.get(job_id)
        if held is not None and held[0] == token:
            del self.stopping[job_id]
            return True
        return False

    # ------------------------------------------------------------------ credits

    def grant(self, wanted: int, claimed: bool = True) -> int:
        """Credits to pass to the strategy for ``wanted`` freed slots, so that free
        credits plus held leases never exceed the slots (a worker claiming to free more
        than it can hold gains nothing). ``claimed``: the worker said these slots are
        free (else we only fill what room there is: a hello, a worker back alive)."""
        granted = max(0, min(wanted, self.slots - len(self.running) - self.free))
        self.free += granted
        if claimed:
            self._hold_back(wanted - granted)
        return granted

    def freed_while_away(self, freed: int) -> None:
        """The worker freed slots while it gets no work (dead): what it frees beyond the
        slots no lease holds is held back like ``grant``'s (its leases end later)."""
        self._hold_back(freed - (self.slots - len(self.running)))

    def _hold_back(self, over: int) -> None:
        # Only slots we still count as leased can be freed early; a claim beyond that is
        # no free slot at all and is forgotten.
        self.excess = min(len(self.running), self.excess + max(0, over))

    def release(self, ended: int, available: bool) -> int:
        """``ended`` leases ended without a result: the excess they held back (at most one
        each) is granted now if the worker takes work, else it is in the room counted
        from the slots when it comes back."""
        released = min(ended, self.excess)
        self.excess -= released
        return self.grant(released, claimed=False) if released and available else 0

    def credit(self, granted: int) -> WorkerCredit | None:
        """The strategy's message for ``granted`` credits (None for none)."""
        if not granted:
            return None
        return WorkerCredit(self.peer, self.name, self.queues, self.slots, granted, self.tasks)

    def withdraw(self) -> None:
        """The strategy forgot this worker (dead, draining, gone): it holds no credits.
        ``excess`` stays: it is about leases, which it still holds."""
        self.free = 0

    # ------------------------------------------------------------------- leases

    def assign(
        self, assignments: list[wire.Assignment], overdue_after: float
    ) -> tuple[list[wire.Assign], list[wire.Assignment]]:
        """Record committed leases and build their Assign frames (each with its own seq);
        the assignments too large for any frame are returned apart, not recorded."""
        self.free = max(0, self.free - len(assignments))
        groups, oversize = pack(assignments)
        frames: list[wire.Assign] = []
        now = time.monotonic()
        for group in groups:
            self.seq += 1
            for a in group:
                self.running[a.job_id] = a.token
                self.granted_in[a.job_id] = self.seq
                if a.timeout:
                    self.timeouts[a.job_id] = a.timeout
                    deadline = now + a.timeout + overdue_after
                    heapq.heappush(self.deadlines, (deadline, a.job_id, a.token))
            frames.append(wire.Assign(group, self.seq, self.lease_basis))
        return frames, oversize

    def claim(self, leases: list[tuple[int, int]]) -> None:
        """Hold leases a hello claims, provisionally, until the scheduler's verdict."""
        for job_id, token in leases:
            self.running[job_id] = token
            self.granted_in[job_id] = self.seq  # checked by heartbeats after the next Assign
            self.adopting.add(job_id)

    def watch(
        self, timeouts: list[tuple[int, float]], leases: list[tuple[int, int]], grace: float
    ) -> None:
        """Set the overdue deadline of adopted leases with a timeout: now + timeout + grace."""
        tokens = dict(leases)
        now = time.monotonic()
        for job_id, timeout in timeouts:
            if job_id in tokens:
                self.timeouts[job_id] = timeout
                heapq.heappush(self.deadlines, (now + timeout + grace, job_id, tokens[job_id]))

    def postpone(self, waiting: list[int], grace: float) -> None:
        """Jobs a heartbeat says the worker has not started yet (prefetched): the overdue
        deadline of each with a timeout is now + timeout + grace, since its handler's
        timeout counts from its start."""
        now = time.monotonic()
        for job_id in waiting:
            timeout = self.timeouts.get(job_id)
            if timeout is not None and job_id in self.running:
                self.postponed[job_id] = now + timeout + grace

    def end(self, job_id: int, token: int) -> bool:
        """The lease ended (result, reclaim, stop); False if it was not held."""
        if self.running.get(job_id) != token:
            return False
        del self.running[job_id]
        self.granted_in.pop(job_id, None)
        # Once per result on the hot path: skip the sets and dicts that are usually empty.
        if self.missing:
            self.missing.discard(job_id)
        if self.adopting:
            self.adopting.discard(job_id)
        if self.progress:
            self.progress.pop(job_id, None)
        if self.timeouts:
            self.timeouts.pop(job_id, None)
            self.postponed.pop(job_id, None)
        return True

    def reconcile(
        self, beat: wire.Heartbeat
    ) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """Compare a heartbeat's leases with the granted ones.

        Returns (not held, not granted): leases granted in a frame the worker had
        processed yet missing from two heartbeats in a row (one miss may be a result
        still in the worker's outbox when it wrote the heartbeat; the result then
        arrives first and ends the lease), and leases it lists that it was not granted.
        Costs O(slots): the caller has refused heartbeats listing more."""
        running = self.running
        listed = dict(beat.leases)
        not_granted = [
            (job_id, token) for job_id, token in beat.leases if running.get(job_id) != token
        ]
        not_held: list[tuple[int, int]] = []
        if beat.assign_seq > self.seq:
            return not_held, not_granted  # names frames never sent: proves nothing
        for job_id, token in running.items():
            granted = self.granted_in.get(job_id)
            if job_id in self.adopting or granted is None or granted > beat.assign_seq:
                continue
            if listed.get(job_id) == token:
                self.missing.discard(job_id)
            elif job_id in self.missing:
                not_held.append((job_id, token))
            else:
                self.missing.add(job_id)
        return not_held, not_granted

    def record_progress(
        self, updates: list[tuple[int, int, float, str]], now: float
    ) -> tuple[list[tuple[Any, ...]], int] | None:
        """Keep the latest report of each held lease: (events to publish, refused count),
        or None when the frame came too soon after the last one (dropped whole)."""
        if now - self.progress_at < PROGRESS_MIN_INTERVAL_S:
            return None
        self.progress_at = now
        events: list[tuple[Any, ...]] = []
        refused = 0
        for job_id, token, fraction, message in updates:
            if self.running.get(job_id) != token:
                refused += 1
                continue
            self.progress[job_id] = (fraction, message)
            events.append(("progress", job_id, "RUNNING", "", self.name, token, fraction, message))
        return events, refused

    def not_listed(self, held: list[tuple[int, int]]) -> list[tuple[int, int]]:
        """Leases a leaving worker does not list as held (its results came first, on the
        same connection): it never started them."""
        listed = dict(held)
        return [(j, t) for j, t in self.running.items() if listed.get(j) != t]

    def overdue(self, now: float) -> list[tuple[int, int]]:
        """Leases with a timeout whose result is overdue by lease + grace, still held."""
        due: list[tuple[int, int]] = []
        heap = self.deadlines
        while heap and heap[0][0] <= now:
            deadline, job_id, token = heapq.heappop(heap)
            if self.running.get(job_id) != token:
                continue
            later = self.postponed.get(job_id, deadline)
            if later > deadline:  # it was still waiting to start: due later
                heapq.heappush(heap, (later, job_id, token))
                continue
            due.append((job_id, token))
        return due


def worker_views(workers: Iterable[WorkerConn], now: float) -> list[wire.WorkerView]:
    """The status view of every connected worker, with its running jobs' progress."""
    views = []
    for w in workers:
        jobs = []
        for job_id, token in w.running.items():
            fraction, message = w.progress.get(job_id, (None, ""))
            jobs.append(wire.RunningView(job_id, token, fraction, message))
        views.append(
            wire.WorkerView(
                w.name,
                w.state,
                w.slots,
                len(w.running),
                list(w.queues),
                round(now - w.last_seen, 3),
                jobs,
                w.prefetch,
            )
        )
    return views
