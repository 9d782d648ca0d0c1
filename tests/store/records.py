"""Jobs, workflows and whole-store snapshots for the conformance suite, built only from
the store interface (``Ops`` in, typed reads out)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec

from actors.lifecycle import JobState
from actors.scheduler.job import Job, JobOptions
from actors.scheduler.ops import Ops
from actors.scheduler.store.base import StoreBackend
from tests.helpers.job_rows import stored_job
from transport import protocol as wire

Q, R, P = JobState.QUEUED, JobState.RUNNING, JobState.PENDING
S, F, C, U = JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.UPSTREAM_FAILED

_pack = msgspec.msgpack.encode

# Fields a store does not keep, and what every read gives them.
MEMORY_ONLY: dict[str, Any] = {
    "parent_results": None,
    "queued_at": 0.0,
    "peer": None,
    "settled": False,
}
PERSISTED = tuple(f for f in Job.__struct_fields__ if f not in MEMORY_ONLY)


def job(
    job_id: int,
    status: JobState = Q,
    *,
    queue: str = "default",
    key: str | None = None,
    depends_on: tuple[int, ...] = (),
    created_at: float = 1000.0,
    **fields: Any,
) -> Job:
    """A job as the scheduler creates them, with only what a test names set."""
    return stored_job(
        job_id,
        status,
        task="tests.task",
        args=_pack([job_id]),
        kwargs=_pack({}),
        queue=queue,
        depends_on=depends_on,
        created_at=created_at,
        idempotency_key=key,
        **fields,
    )


def full_job(job_id: int) -> Job:
    """A job with every field set, memory-only ones included (the store must drop those)."""
    return Job(
        job_id,
        "pkg.module.task",
        _pack([1, "two", 3.5, None, b"\x00\xff"]),
        _pack({"a": 1, "nested": {"b": [True, False]}}),
        -7,
        "gpu",
        (job_id + 1000, job_id + 2000),  # parents need not exist in the store
        5,
        1_700_000_000.125,
        F,
        attempts=3,
        token=9,
        worker="worker-7@host",
        started_at=1_700_000_100.25,
        finished_at=1_700_000_200.5,
        not_before=1_700_000_050.75,
        result=msgspec.Raw(_pack({"out": [1, 2, 3]})),
        error="Traceback ...\nValueError: bad ünïcode ✓",
        owner="rq:8>client-key-in-z85.........0123456789",
        options=JobOptions(
            f"key-{job_id}", 12.5, wire.Backoff(0.5, 3.0, 120.0), 42, "fetch", "customer-42", 3
        ),
        parent_results=[wire.ParentResult(1, "s", msgspec.Raw(_pack(1)))],
        queued_at=123.0,
        peer=b"peer-id",
        settled=True,
    )


def as_read(stored: Job) -> Job:
    """What a read returns for ``stored``: its persisted fields, memory-only ones reset."""
    return msgspec.structs.replace(stored, **MEMORY_ONLY)


def assert_same_job(got: Job, expected: Job) -> None:
    """Field by field, so a mismatch names the field."""
    for name in Job.__struct_fields__:
        assert getattr(got, name) == getattr(expected, name), f"job {expected.id}: {name}"
    assert type(got.status) is JobState, "status is read back as a JobState"


def moved(stored: Job, status: JobState, **changes: Any) -> tuple[Job, tuple[Any, ...]]:
    """``stored`` moved to ``status`` (with ``changes``), and the CAS update that says so."""
    after = msgspec.structs.replace(stored, status=status, **changes)
    return after, after.update_row(stored.status)


def attempt(job_id: int, token: int, outcome: str = "failed") -> tuple[Any, ...]:
    """An ``Ops.attempts`` row (``ATTEMPT_FIELDS``)."""
    return (job_id, token, f"w{token}", 10.0 * token, 10.0 * token + 1, outcome, f"e{token}")


async def commit(store: StoreBackend, **ops: Any) -> None:
    await store.commit(Ops(**ops))


async def snapshot(
    store: StoreBackend, job_ids: Iterable[int], keys: Iterable[str], workflow_ids: Iterable[int]
) -> dict[str, Any]:
    """Everything the reads say about these jobs, keys and workflows (and all jobs listed)."""
    ids = sorted(set(job_ids))
    flows = sorted(set(workflow_ids))
    return {
        "recovered": await store.recover(),
        "jobs": sorted(await store.jobs(ids), key=lambda j: j.id),
        "listed": await store.list_jobs(limit=100_000),
        "by_status": {s: await store.job_ids(s) for s in JobState},
        "keys": await store.ids_by_key(sorted(set(keys))),
        "attempts": {i: await store.attempts(i) for i in ids},
        "children": {i: await store.children([i]) for i in ids},
        "workflows": {w: await store.workflow(w) for w in flows},
        "steps": {w: await store.workflow_jobs(w) for w in flows},
        "flow_keys": {f"flow-{w}": await store.workflow_by_key(f"flow-{w}") for w in flows},
    }
