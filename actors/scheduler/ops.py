"""What one write changes: the batch of record operations the job table fills and the store
commits in one transaction (new jobs, compare-and-swap updates, finished attempts, workflows
and their edges, deletions).

It belongs to the scheduler, not to the store: the job table records changes here without
knowing where they go, and every store backend reads the same shapes. The tuples' field
orders are part of that contract and are spelled once, below; a backend maps them to its
columns.
"""

from __future__ import annotations

from typing import Any

import msgspec

# A compare-and-swap update of one job (``Job.update_row``): these fields, then the job id
# and the status the store must still hold for the update to apply.
CHANGED_FIELDS = (
    "status",
    "attempts",
    "token",
    "worker",
    "started_at",
    "finished_at",
    "not_before",
    "result",
    "error",
)
# One ended attempt of a job (its history): the fields of an ``AttemptRecord``, in order.
ATTEMPT_FIELDS = ("job_id", "token", "worker", "started_at", "finished_at", "outcome", "error")
# One new workflow: its id, name, idempotency key (or None) and creation time.
WORKFLOW_FIELDS = ("id", "name", "idempotency_key", "created_at")
# One schedule, whole (``actors.scheduler.schedule_book.Schedule.row``): its name, its spec
# (msgpack), who added it, when, its next and last fire times, the last job it created,
# the fire times it skipped, and whether it is paused.
SCHEDULE_FIELDS = (
    "name",
    "spec",
    "owner",
    "created_at",
    "next_fire",
    "last_fire",
    "last_job",
    "skipped",
    "paused",
)


class Ops(msgspec.Struct):
    """One writer's share of a transaction.

    ``new_jobs`` are the jobs this write creates, held by reference until the write is
    sealed; sealing snapshots them into ``inserts`` in the state they have then, so a job
    created and queued in one step costs one insert, not an insert and an update, and
    later changes to the live object are later writes. ``updates`` are compare-and-swap
    rows (``CHANGED_FIELDS``, id, expected status): the whole batch fails if one of them
    does not find its job in the expected status. ``deletes`` are (job id, expected
    status) pairs, also compare-and-swap; a deleted job takes its attempts and edges.
    """

    inserts: list[Any] = []  # actors.scheduler.job.Job snapshots
    updates: list[tuple[Any, ...]] = []
    attempts: list[tuple[Any, ...]] = []
    workflows: list[tuple[Any, ...]] = []
    edges: list[tuple[int, int]] = []
    deletes: list[tuple[int, str]] = []
    # Rate limits: (name, (count, period, burst, declared) to create or change it, keeping
    # its bucket's state, or None to delete it), in order; then (name, tat): a bucket's
    # state, written only if the limit still exists (a late pick never brings a removed one
    # back). ``declared``: a task's own limit (``@task(rate_limit=...)``), not an admin's.
    limits: list[tuple[str, tuple[int, float, int, bool] | None]] = []
    limit_states: list[tuple[str, float]] = []
    # (name, a SCHEDULE_FIELDS row to write whole, or None to delete it), applied in order
    # after the jobs: the job a fire time creates commits with the schedule's advance.
    schedules: list[tuple[str, tuple[Any, ...] | None]] = []
    new_jobs: list[Any] = []
    new_ids: set[int] = set()

    def seal(self) -> Ops:
        """Snapshot the new jobs now; later changes to them are later writes."""
        self.inserts += [msgspec.structs.replace(job) for job in self.new_jobs]
        self.new_jobs = []
        self.new_ids = set()
        return self

    def extend(self, other: Ops) -> None:
        """Add a sealed write's operations to this batch (the store merges writers)."""
        self.inserts += other.inserts
        self.updates += other.updates
        self.attempts += other.attempts
        self.workflows += other.workflows
        self.edges += other.edges
        self.deletes += other.deletes
        self.limits += other.limits
        self.limit_states += other.limit_states
        self.schedules += other.schedules

    def __len__(self) -> int:
        return (
            len(self.new_jobs)
            + len(self.inserts)
            + len(self.updates)
            + len(self.attempts)
            + len(self.workflows)
            + len(self.edges)
            + len(self.deletes)
            + len(self.limits)
            + len(self.limit_states)
            + len(self.schedules)
        )


def merged(batches: list[Ops]) -> Ops:
    """Sealed writes as one transaction's batch (the first itself when it is alone)."""
    if len(batches) == 1:
        return batches[0]
    batch = Ops()
    for ops in batches:
        batch.extend(ops)
    return batch
