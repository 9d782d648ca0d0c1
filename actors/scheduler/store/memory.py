"""An in-memory store: the same contract as SQLite, no file. For unit tests of the
scheduler's actors, and as the reference the conformance suite holds every backend to.

A "restart" is a new scheduler over the same ``MemoryStore`` object (close, then open
again): what was committed is still there, nothing else is.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Collection

import msgspec

from actors.errors import StoreInconsistent
from actors.lifecycle import LIVE, TERMINAL, JobState
from actors.scheduler.job import Job
from actors.scheduler.ops import CHANGED_FIELDS, Ops
from actors.scheduler.store.base import (
    MAY_RUN_AGAIN,
    PURGED_AFTER_DONE,
    AttemptRecord,
    LimitRecord,
    Purged,
    Recovered,
    ScheduleRecord,
    StoreBackend,
    WorkflowRecord,
)


def _fresh(job: Job) -> Job:
    """A copy the caller may change, as a read from a database would be."""
    copy = msgspec.structs.replace(job)
    copy.settled, copy.peer, copy.parent_results, copy.queued_at = False, None, None, 0.0
    return copy


class MemoryStore(StoreBackend):
    def __init__(self) -> None:
        self.where = "in-memory store"
        self.database_id = uuid.uuid4().hex
        self.rows: dict[int, Job] = {}
        self.attempt_rows: dict[tuple[int, int], AttemptRecord] = {}
        self.workflow_rows: dict[int, WorkflowRecord] = {}
        self.edges: set[tuple[int, int]] = set()
        self.limit_rows: dict[str, LimitRecord] = {}
        self.schedule_rows: dict[str, ScheduleRecord] = {}
        self.is_open = False
        self.commits = 0

    async def open(self) -> None:
        self.is_open = True

    async def close(self) -> None:
        self.is_open = False

    async def commit(self, ops: Ops) -> None:
        assert self.is_open, "commit on a closed store"
        self._check(ops)  # a refused batch leaves nothing behind
        self._apply(ops)
        self.commits += 1

    def _check(self, ops: Ops) -> None:
        """Raise StoreInconsistent if any part of the batch would not apply, in the order
        the batch applies (workflows, inserts, updates, deletes), touching nothing."""
        flow_ids = set(self.workflow_rows)
        flow_keys = {w.idempotency_key for w in self.workflow_rows.values()} - {None}
        for row in ops.workflows:
            record = WorkflowRecord(*row)
            if record.id in flow_ids or record.idempotency_key in flow_keys:
                raise StoreInconsistent(f"workflow {record.id} exists already")
            flow_ids.add(record.id)
            if record.idempotency_key is not None:
                flow_keys.add(record.idempotency_key)
        statuses = {job_id: job.status for job_id, job in self.rows.items()}
        keys = {j.idempotency_key for j in self.rows.values()} - {None}
        for job in ops.inserts:
            if job.id in statuses:
                raise StoreInconsistent(f"job {job.id} exists already")
            if job.idempotency_key in keys:
                raise StoreInconsistent(f"idempotency key {job.idempotency_key!r} is taken")
            statuses[job.id] = job.status
            if job.idempotency_key is not None:
                keys.add(job.idempotency_key)
        for change in ops.updates:
            job_id, expected = change[-2], change[-1]
            if statuses.get(job_id) != expected:
                raise StoreInconsistent(f"compare-and-swap missed job {job_id}")
            statuses[job_id] = change[0]
        for job_id, expected in ops.deletes:
            if statuses.get(job_id) != expected:
                raise StoreInconsistent(f"compare-and-swap missed job {job_id} (delete)")
            del statuses[job_id]

    def _apply(self, ops: Ops) -> None:
        for workflow in ops.workflows:
            flow = WorkflowRecord(*workflow)
            self.workflow_rows[flow.id] = flow
        for job in ops.inserts:
            self.rows[job.id] = _fresh(job)
        self.edges.update(ops.edges)
        for change in ops.updates:
            job = self.rows[change[-2]]
            for name, value in zip(CHANGED_FIELDS, change, strict=False):
                setattr(job, name, value)
            job.status = JobState(job.status)  # as a database would read it back
        for attempt in ops.attempts:
            record = AttemptRecord(*attempt)
            self.attempt_rows[(record.job_id, record.token)] = record
        for job_id, _expected in ops.deletes:
            del self.rows[job_id]
            for key in [k for k in self.attempt_rows if k[0] == job_id]:
                del self.attempt_rows[key]
            self.edges = {e for e in self.edges if job_id not in e}
        for name, rate in ops.limits:
            old = self.limit_rows.pop(name, None)
            if rate is not None:
                count, period, burst, declared = rate
                tat = old.tat if old else 0.0
                self.limit_rows[name] = LimitRecord(name, count, period, burst, tat, declared)
        for name, tat in ops.limit_states:
            if name in self.limit_rows:
                self.limit_rows[name] = msgspec.structs.replace(self.limit_rows[name], tat=tat)
        for name, row in ops.schedules:
            if row is None:
                self.schedule_rows.pop(name, None)
            else:
                self.schedule_rows[name] = ScheduleRecord(*row)

    # ------------------------------------------------------------------ reads

    async def recover(self) -> Recovered:
        live = [_fresh(j) for j in sorted(self.rows.values(), key=_id) if j.status in LIVE]
        wanted = {p for job in live for p in job.depends_on} - {job.id for job in live}
        times = [
            t for j in self.rows.values() for t in (j.created_at, j.started_at, j.finished_at) if t
        ]
        return Recovered(
            live=live,
            counts=dict(Counter(j.status.value for j in self.rows.values())),
            max_job_id=max(self.rows, default=0),
            max_workflow_id=max(self.workflow_rows, default=0),
            last_write=max(times, default=0.0) if self.rows else None,
            parents=await self.jobs(sorted(wanted)),
            database_id=self.database_id,
        )

    async def jobs(self, ids: Collection[int]) -> list[Job]:
        return [_fresh(self.rows[i]) for i in dict.fromkeys(ids) if i in self.rows]

    async def ids_by_key(self, keys: Collection[str]) -> dict[str, int]:
        wanted = set(keys)
        return {
            j.idempotency_key: j.id
            for j in self.rows.values()
            if j.idempotency_key is not None and j.idempotency_key in wanted
        }

    async def list_jobs(
        self,
        *,
        status: JobState | None = None,
        queue: str | None = None,
        before: int | None = None,
        limit: int = 100,
        owner: str | None = None,
        task: str | None = None,
        key: str | None = None,
        created_after: float | None = None,
        created_before: float | None = None,
    ) -> list[Job]:
        found: list[Job] = []
        if limit <= 0:
            return found
        for job_id in sorted(self.rows, reverse=True):
            job = self.rows[job_id]
            if (
                (status is None or job.status == status)
                and (queue is None or job.queue == queue)
                and (before is None or job_id < before)
                and (owner is None or job.owner == owner)
                and (task is None or job.task == task)
                and (key is None or job.idempotency_key == key)
                and (created_after is None or job.created_at >= created_after)
                and (created_before is None or job.created_at < created_before)
            ):
                found.append(_fresh(job))
                if len(found) >= limit:
                    break
        return found

    async def job_ids(self, status: JobState) -> list[int]:
        return sorted(i for i, j in self.rows.items() if j.status == status)

    async def ended_by_minute(self, since: float) -> list[tuple[int, str, int]]:
        counts: Counter[tuple[int, str]] = Counter(
            (int(j.finished_at // 60), j.status.value)
            for j in self.rows.values()
            if j.status in TERMINAL and j.finished_at is not None and j.finished_at >= since
        )
        return [(m, s, n) for (m, s), n in sorted(counts.items())]

    async def attempts(self, job_id: int) -> list[AttemptRecord]:
        return sorted(
            (a for (i, _), a in self.attempt_rows.items() if i == job_id), key=lambda a: a.token
        )

    async def workflow(self, workflow_id: int) -> WorkflowRecord | None:
        return self.workflow_rows.get(workflow_id)

    async def workflow_by_key(self, key: str) -> WorkflowRecord | None:
        return next((w for w in self.workflow_rows.values() if w.idempotency_key == key), None)

    async def workflow_jobs(self, workflow_id: int) -> list[Job]:
        steps = [j for j in self.rows.values() if j.workflow_id == workflow_id]
        return [_fresh(j) for j in sorted(steps, key=_id)]

    async def children(self, parents: Collection[int]) -> list[int]:
        wanted = set(parents)
        return sorted({child for parent, child in self.edges if parent in wanted})

    async def limits(self) -> list[LimitRecord]:
        return [self.limit_rows[name] for name in sorted(self.limit_rows)]

    async def schedules(self) -> list[ScheduleRecord]:
        return [self.schedule_rows[name] for name in sorted(self.schedule_rows)]

    async def purge(self, done_before: float, failed_before: float, limit: int) -> Purged:
        assert self.is_open, "purge on a closed store"
        newest = max(self.rows, default=0)
        kept = {
            parent
            for parent, child in self.edges
            if child in self.rows and self.rows[child].status.value in MAY_RUN_AGAIN
        }

        def due(job: Job) -> bool:
            before = done_before if job.status.value in PURGED_AFTER_DONE else failed_before
            if job.status.value not in PURGED_AFTER_DONE and job.status is not JobState.FAILED:
                return False
            return before > 0 and job.finished_at is not None and job.finished_at < before

        found = sorted(
            (j for j in self.rows.values() if due(j) and j.id < newest and j.id not in kept),
            key=lambda j: (j.finished_at or 0.0, j.id),
        )[: max(0, limit)]
        gone = {job.id for job in found}
        for job_id in gone:
            del self.rows[job_id]
        self.attempt_rows = {k: a for k, a in self.attempt_rows.items() if k[0] not in gone}
        self.edges = {(p, c) for p, c in self.edges if p not in gone and c not in gone}
        flows = {job.workflow_id for job in found if job.workflow_id is not None}
        flows -= {job.workflow_id for job in self.rows.values()}
        flows.discard(max(self.workflow_rows, default=0))
        dropped = [flow for flow in flows if self.workflow_rows.pop(flow, None) is not None]
        return Purged([(j.id, j.status.value, j.idempotency_key) for j in found], len(dropped))


def _id(job: Job) -> int:
    return job.id
