"""The job table's side of a scheduler restart (a mixin of ``actors.scheduler.jobs.JobTable``):
rebuilding memory from the store, bringing back jobs finished long ago, and the leases
recovered RUNNING that reconnecting workers claim (``adopt``) or nobody holds (``orphans``).
None of these changes a job's state; that is ``JobTable.move_all``'s alone.
"""

from __future__ import annotations

import heapq
import time
from collections import Counter
from collections.abc import Iterable

from actors.config import SchedulerConfig
from actors.lifecycle import PENDING, RUNNING
from actors.scheduler.job import NO_ARGS, NO_KWARGS, Job, SharedNames
from actors.scheduler.quotas import HeldJobs
from transport import protocol as wire


class Recovery:
    jobs: dict[int, Job]
    by_key: dict[str, int]
    counts: Counter[str]
    next_id: int
    held: HeldJobs
    names: SharedNames
    inherited: dict[int, int]
    adopted_at: dict[int, float]
    config: SchedulerConfig
    _retry_heap: list[tuple[float, int]]

    def interrupted(self, job: Job) -> bool:
        """Whether the job's current lease is one this process inherited at start-up and
        its worker fenced it while no scheduler answered: not adopted, or adopted less
        than a lease ago (a fence after adoption needs a lease of silence from this one,
        and counts)."""
        if self.inherited.get(job.id) != job.token:
            return False
        adopted = self.adopted_at.get(job.id)
        return adopted is None or time.monotonic() - adopted < self.config.lease

    def load(self, live: Iterable[Job], counts: dict[str, int], max_id: int) -> None:
        """Rebuild memory from the store at start-up: live jobs, totals, the next id."""
        self.counts.update(counts)
        self.next_id = max_id + 1
        self.admit(live)

    def admit(self, live: Iterable[Job]) -> None:
        """Live jobs read from the store at start-up (``load`` without the totals); they
        keep the table's one copy of each task and queue name (``SharedNames``), shared
        with the jobs submitted later, and the shared empty arguments, not one per row."""
        names, jobs, by_key = self.names, self.jobs, self.by_key
        held: dict[str, list[int]] = {}  # owner -> [jobs, bytes], added to ``self.held`` once
        for job in live:
            names.share(job)
            if job.args == NO_ARGS:
                job.args = NO_ARGS
            if job.kwargs == NO_KWARGS:
                job.kwargs = NO_KWARGS
            jobs[job.id] = job
            owned = held.get(job.owner)
            if owned is None:
                owned = held[job.owner] = [0, 0]
            owned[0] += 1
            owned[1] += wire.payload_bytes(job)
            options = job.options
            if options is not None and options.idempotency_key is not None:
                by_key[options.idempotency_key] = job.id
            status = job.status
            if status is RUNNING:
                self.inherited[job.id] = job.token
            elif status is PENDING and job.not_before > 0 and not self.may_wait_on_parents(job):
                heapq.heappush(self._retry_heap, (job.not_before, job.id))
        for owner, (count, nbytes) in held.items():
            self.held.add(owner, count, nbytes)

    @staticmethod
    def may_wait_on_parents(job: Job) -> bool:
        """A PENDING job that never ran and has parents: it waits for them (the DAG
        resolver decides), however long its own delay; the others wait only for a time."""
        return bool(job.depends_on) and job.attempts == 0

    def reload(self, job: Job) -> None:
        """Bring a job read back from SQLite (finished long ago) into memory."""
        if job.id not in self.jobs:
            self.jobs[job.id] = job
            if job.idempotency_key is not None:
                self.by_key[job.idempotency_key] = job.id

    def adopt(self, job_id: int, token: int, peer: bytes, worker: str) -> bool:
        """After a scheduler restart, a reconnecting worker still holds this lease: keep it.
        Idempotent: the same worker claiming it again (a repeated hello) is accepted again,
        also from another connection, which then holds it (a worker searching for a new
        leader may leave a hello on a connection it gives up and come back on another).
        Only the worker the lease was granted to may claim it, by name (``NAME@KEY`` with
        keys: the key it was granted to)."""
        job = self.jobs.get(job_id)
        if job is None or job.status is not RUNNING or job.token != token:
            return False
        if job.worker and job.worker != worker:
            return False
        if not job.worker and job.peer is not None and job.peer != peer:
            return False
        job.peer = peer
        job.worker = worker
        if job.id in self.inherited and job.id not in self.adopted_at:
            self.adopted_at[job.id] = time.monotonic()  # see JobTable.interrupted
        return True

    def orphans(self) -> list[Job]:
        """RUNNING jobs no connected worker holds (recovered from SQLite, not adopted)."""
        return [j for j in self.jobs.values() if j.status is RUNNING and j.peer is None]
