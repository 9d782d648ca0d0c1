"""Concurrency keys and rate limits, for the strategy: which ready jobs may start now.

A *gate* is one name: a concurrency key (at most ``max_concurrent`` of its jobs running),
a rate limit (a token bucket, ``Bucket``), or both when a limit names a key. A job passes
the gate of its key and the rate limit of its task, if any. The strategy asks ``admit``
when it is about to hand a job out: yes takes a slot of the key and a token of each
bucket; no *holds* the job in the gate that refused it, in its own heap, out of the ready
queues, so it blocks nothing behind it. ``freed`` (a keyed job left RUNNING, or its
assignment did not happen) and ``due`` (a bucket has tokens again) release held jobs, in
the strategy's order (priority, then arrival), back into the ready queues, where they
join as new arrivals: fair across keys (see ``Strategy.release``).

The running count is the jobs this strategy picked that have not been reported freed,
plus those a starting scheduler reports RUNNING (``running``): a restart recounts them
exactly from the database. No timer lives here: ``next_due`` says when the earliest held
job may get a token, and the strategy actor keeps ONE timer for it.
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Callable, Iterable

from actors.scheduler.messages import ReadyJob

# Slack when comparing bucket times, in seconds: a token due "now" is not missed by
# rounding. Unix times near 1.8e9 carry about 2.4e-7 s of precision, so every comparison
# subtracts the two times first (exact when they are close) and allows a microsecond.
EPS = 1e-6


class Bucket:
    """A token bucket as one number (GCRA): ``tat`` is the Unix time at which the bucket
    is empty again and refilled to nothing; a job may start when ``tat`` lies less than
    ``burst`` intervals ahead. ``count`` per ``period`` seconds on average, at most
    ``burst`` at once. Persisting ``tat`` persists the whole state."""

    __slots__ = ("burst", "count", "interval", "period", "tat")

    def __init__(self, count: int, period: float, burst: int, tat: float = 0.0) -> None:
        self.count, self.period, self.burst = count, period, burst
        self.interval = period / count
        self.tat = tat

    def wait(self, now: float) -> float:
        """Seconds until a token is free (0: one is free now)."""
        return max(0.0, (self.tat - now) - (self.burst - 1) * self.interval)

    def tokens(self, now: float) -> int:
        """Tokens free now (0 to ``burst``): the burst less the intervals the bucket is
        ahead of ``now``. (Not ``now + burst * interval - tat``: at Unix-time magnitudes
        that sum loses the bits a 50 ms interval needs, and a due token read as 0.)"""
        ahead = max(0.0, self.tat - now) / self.interval
        return max(0, min(self.burst, math.floor(self.burst - ahead + EPS / self.interval)))

    def take(self, now: float) -> bool:
        if self.wait(now) > EPS:
            return False
        self.tat = max(self.tat, now) + self.interval
        return True


class Gate:
    """One name's gate and the jobs held at it, in the strategy's order."""

    __slots__ = ("bucket", "declared", "held", "max", "max_seq", "name", "queued", "running")

    def __init__(self, name: str) -> None:
        self.name = name
        self.max = 0  # 0: no cap on running jobs
        self.max_seq = -1  # the submission (job id) whose max_concurrent applies
        self.running = 0
        self.queued = 0  # its jobs in the ready queues (a capped key lets max - running in)
        self.bucket: Bucket | None = None
        self.declared = False  # its bucket is a task's declared limit, not an admin's
        self.held: list[tuple[int, int, ReadyJob]] = []  # (rank, order, job)

    def full(self) -> bool:
        return 0 < self.max <= self.running

    def crowded(self) -> bool:
        """As many of its jobs running or ready to as the key may run: hold the next."""
        return 0 < self.max <= self.running + self.queued

    def closed(self, now: float) -> bool:
        return self.full() or (self.bucket is not None and self.bucket.wait(now) > EPS)

    def idle(self) -> bool:
        return not (self.running or self.queued or self.held or self.bucket is not None)


class Gates:
    """Every gate of one strategy. ``rated``: the names with a rate limit."""

    def __init__(
        self, rank: Callable[[ReadyJob], int], clock: Callable[[], float] = time.time
    ) -> None:
        self.rank = rank  # a held job's place: (rank, order), smallest first
        self.clock = clock
        self.gates: dict[str, Gate] = {}
        self.rated: dict[str, Gate] = {}
        self.inflight: dict[int, str] = {}  # picked keyed job -> its key
        self.held = 0
        self.changed: set[str] = set()  # buckets taken from since ``take_changed``

    def gated(self, job: ReadyJob) -> bool:
        """Whether ``job`` has a gate to pass (cheap: the hot path asks for every job)."""
        return bool(job.concurrency_key) or (bool(self.rated) and job.task in self.rated)

    def _gates_of(self, job: ReadyJob) -> list[Gate]:
        found: list[Gate] = []
        key = job.concurrency_key
        if key:
            gate = self.gates.get(key)
            if gate is None:
                gate = self.gates[key] = Gate(key)
            if job.job_id > gate.max_seq:  # the latest submission's N applies to the key
                gate.max, gate.max_seq = job.max_concurrent, job.job_id
            found.append(gate)
        if self.rated and job.task != key:
            rated = self.rated.get(job.task)
            if rated is not None:
                found.append(rated)
        return found

    def hold_new(self, job: ReadyJob) -> bool:
        """A job just became ready: hold it if a gate of its is closed or already holds
        jobs (it may not overtake them); False: it goes to the ready queues."""
        now = self.clock()
        gates = self._gates_of(job)
        for gate in gates:
            if gate.held or gate.closed(now) or gate.crowded():
                self._hold(gate, job)
                return True
        if job.concurrency_key:
            gates[0].queued += 1
        return False

    def admit(self, job: ReadyJob, now: float | None = None) -> bool:
        """The strategy is about to hand ``job`` out: take a slot of its key and a token of
        each bucket, or hold it at the first gate that is closed and say False. ``now``:
        the match's one reading of the clock (see ``Strategy.match``), else read here."""
        if now is None:
            now = self.clock()
        gates = self._gates_of(job)
        if job.concurrency_key:
            gates[0].queued -= 1  # out of the ready queues, admitted or held
        for gate in gates:
            if gate.closed(now):
                self._hold(gate, job)
                return False
        for gate in gates:
            if gate.bucket is not None:
                gate.bucket.take(now)
                self.changed.add(gate.name)
        if job.concurrency_key:
            self.gates[job.concurrency_key].running += 1
            self.inflight[job.job_id] = job.concurrency_key
        return True

    def _hold(self, gate: Gate, job: ReadyJob) -> None:
        heapq.heappush(gate.held, (self.rank(job), job.order, job))
        self.held += 1

    # ---------------------------------------------------------------- releases

    def running(self, jobs: Iterable[tuple[int, str, int, int]]) -> None:
        """A starting scheduler's RUNNING keyed jobs: (job id, key, max_concurrent, seq)."""
        for job_id, key, max_concurrent, seq in jobs:
            if job_id in self.inflight:
                continue
            gate = self.gates.get(key)
            if gate is None:
                gate = self.gates[key] = Gate(key)
            if seq > gate.max_seq:
                gate.max, gate.max_seq = max_concurrent, seq
            gate.running += 1
            self.inflight[job_id] = key

    def freed(self, job_ids: Iterable[int]) -> list[ReadyJob]:
        """These jobs left RUNNING (or were never leased): their keys' slots are free.
        Returns the held jobs that may now go back to the ready queues."""
        released: list[ReadyJob] = []
        for job_id in job_ids:
            key = self.inflight.pop(job_id, None)
            if key is None:
                continue
            gate = self.gates[key]
            gate.running -= 1
            self._release(gate, self.clock(), released)
            if gate.idle():
                del self.gates[key]
        return released

    def due(self) -> list[ReadyJob]:
        """Held jobs whose buckets have tokens again (the strategy's one timer fired)."""
        released: list[ReadyJob] = []
        now = self.clock()
        for gate in list(self.rated.values()):
            if gate.held:
                self._release(gate, now, released)
        return released

    def _release(self, gate: Gate, now: float, out: list[ReadyJob]) -> None:
        """As many held jobs as the gate lets start now, best first. They may be held again
        (another gate of theirs, or a job ahead of them took the slot): never lost."""
        room = len(gate.held)
        if gate.max:
            room = min(room, gate.max - gate.running - gate.queued)
        if gate.bucket is not None:
            room = min(room, gate.bucket.tokens(now))
        for _ in range(max(0, room)):
            job = heapq.heappop(gate.held)[2]
            out.append(job)
            self.held -= 1
            if job.concurrency_key:  # back in the ready queues
                key = self.gates.get(job.concurrency_key)
                if key is None:
                    key = self.gates[job.concurrency_key] = Gate(job.concurrency_key)
                key.queued += 1

    def next_due(self) -> float | None:
        """Seconds until the earliest held job that waits for a token may have one."""
        now = self.clock()
        waits = [
            gate.bucket.wait(now)
            for gate in self.rated.values()
            if gate.held and gate.bucket is not None and not gate.full()
        ]
        return min(waits) if waits else None

    # ------------------------------------------------------------------ limits

    def set_limit(
        self,
        name: str,
        count: int,
        period: float,
        burst: int,
        tat: float | None = None,
        declared: bool = False,
    ) -> None:
        """Create or change a rate limit; ``tat`` None keeps the bucket's state (a new
        bucket starts full: a new limit does not hold back what ran unlimited so far)."""
        gate = self.gates.get(name)
        if gate is None:
            gate = self.gates[name] = Gate(name)
        old = gate.bucket
        keep = old.tat if old is not None and tat is None else tat or 0.0
        gate.bucket = Bucket(count, period, burst, keep)
        gate.declared = declared
        self.rated[name] = gate

    def declare(self, name: str, count: int, period: float, burst: int) -> bool:
        """A task's own limit, as a worker declares it: applied (True) unless an admin's
        limit of that name exists or the same one is in force already."""
        gate = self.rated.get(name)
        if gate is not None and gate.bucket is not None:
            bucket = gate.bucket
            if not gate.declared or (bucket.count, bucket.period, bucket.burst) == (
                count,
                period,
                burst,
            ):
                return False
        self.set_limit(name, count, period, burst, declared=True)
        return True

    def remove_limit(self, name: str) -> list[ReadyJob]:
        """Drop a rate limit; the jobs held only by it are released."""
        gate = self.rated.pop(name, None)
        if gate is None:
            return []
        gate.bucket = None
        released: list[ReadyJob] = []
        self._release(gate, self.clock(), released)
        if gate.idle():
            del self.gates[name]
        self.changed.discard(name)
        return released

    def take_changed(self) -> list[tuple[str, float]]:
        """(name, tat) of the buckets taken from since the last call, to persist."""
        if not self.changed:
            return []
        states = [
            (name, gate.bucket.tat)
            for name in self.changed
            if (gate := self.rated.get(name)) is not None and gate.bucket is not None
        ]
        self.changed = set()
        return states
