"""The leases a worker holds, and until when each is valid by the worker's own clock.

A job may run only while its lease is valid: until ``max(Assign.lease_basis, last
acknowledged heartbeat) + lease`` (:meth:`Leases.expiry`). The scheduler reclaims a job
only after lease + grace measured from when it last heard the worker, which is later
than when the worker sent what it acknowledged, so a worker that stops its lapsed jobs
(self-fencing) always stops first.

Assign frames are numbered per scheduler process (``Welcome.instance``): a frame read
twice or out of order must never run a job again, and the last number read goes back in
every heartbeat (``assign_seq``) so the scheduler can tell a lease never received from
one still running.

Plain bookkeeping with no I/O: the agent (``actors.worker.agent``) sends, starts and
stops; this says what is held and when it lapses, and logs a self-fencing episode once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Container

from transport import protocol as wire

log = logging.getLogger("corral.worker")


class Leases:
    def __init__(self) -> None:
        self.lease = 5.0  # seconds; the scheduler's Welcome says how long
        self.held: dict[int, wire.Assignment] = {}  # leases we hold, by job id
        self.basis: dict[int, float] = {}  # job id -> its Assign's lease_basis
        self.renewed_at = 0.0  # send time (our clock) of the last heartbeat the scheduler acked
        self.fencing_since: float | None = None  # start of a self-fencing episode
        self.assign_seq = 0  # the last Assign frame read, as numbered by self.instance
        self.instance = ""  # the scheduler process (Welcome.instance)

    def listed(self) -> list[tuple[int, int]]:
        """(job id, token) of every lease held: what a heartbeat or a goodbye lists."""
        return [(job_id, a.token) for job_id, a in self.held.items()]

    def expiry(self, job_id: int) -> float:
        """When the lease of a held job lapses (CLOCK_MONOTONIC)."""
        return max(self.basis.get(job_id, 0.0), self.renewed_at) + self.lease

    def welcome(self, lease: float, instance: str) -> None:
        self.lease = lease
        if instance != self.instance:  # a new scheduler process numbers anew
            self.instance, self.assign_seq = instance, 0

    def renewed(self, sent_at: float) -> None:
        """The scheduler acknowledged a heartbeat (or a hello) we sent at ``sent_at``."""
        self.renewed_at = max(self.renewed_at, sent_at)
        since = self.fencing_since
        if since is not None and time.monotonic() <= self.renewed_at + self.lease:
            self.fencing_since = None
            log.warning("heartbeats acknowledged again after %.1fs", time.monotonic() - since)

    def lapsed(self, stopping: Container[int]) -> list[int]:
        """Held jobs whose lease has lapsed by our clock and that are not being stopped
        already: the ones to stop now (self-fencing). Logged once per episode, not once
        per check."""
        now = time.monotonic()
        if now <= self.renewed_at + self.lease:
            return []  # every lease lasts at least this long: none has lapsed (the usual case)
        lapsed = [j for j in self.held if now > self.expiry(j) and j not in stopping]
        if lapsed and self.fencing_since is None:
            self.fencing_since = now
            log.error(
                "no heartbeat acknowledged for %.1fs: stopping %d job(s) (self-fencing)",
                now - self.renewed_at,
                len(lapsed),
            )
        return lapsed

    def next_lapse(self, stopping: Container[int]) -> float:
        """Seconds until the next held lease lapses (one lease if none is held); jobs
        being stopped are done with."""
        now = time.monotonic()
        live = (j for j in self.held if j not in stopping)
        return min((self.expiry(j) - now for j in live), default=self.lease)

    def first_reading(self, message: wire.Assign) -> bool:
        """Whether this Assign frame is read for the first time (it becomes the last one
        read). A duplicate or reordered frame must never run a job again; seq 0 is an
        unnumbered frame from an old sender."""
        if message.seq and message.seq <= self.assign_seq:
            log.warning("ignoring Assign %d: %d was read already", message.seq, self.assign_seq)
            return False
        self.assign_seq = message.seq
        return True

    def lapsed_for(self, lease_basis: float) -> float:
        """How long ago a lease granted on ``lease_basis`` lapsed (negative: still valid)."""
        return time.monotonic() - (max(lease_basis, self.renewed_at) + self.lease)

    def read_too_late(self, message: wire.Assign) -> bool:
        """Whether this Assign's lease had lapsed when we read it (we were paused): its
        jobs may run elsewhere already, so none of them may run here (logged)."""
        late = self.lapsed_for(message.lease_basis)
        if late <= 0:
            return False
        log.warning(
            "dropped %d stale assignment(s) (jobs %s): their lease lapsed %.1fs before "
            "we read them",
            len(message.assignments),
            ", ".join(str(a.job_id) for a in message.assignments),
            late,
        )
        return True

    def take(self, assignment: wire.Assignment, lease_basis: float) -> None:
        self.held[assignment.job_id] = assignment
        self.basis[assignment.job_id] = lease_basis

    def forget(self, job_id: int) -> None:
        self.held.pop(job_id, None)
        self.basis.pop(job_id, None)
