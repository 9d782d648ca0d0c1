"""Rows corral could not have written (a database edited by hand) are refused as they are
read, naming the job and the column, instead of becoming jobs that crash an actor later;
rows corral writes read back unchanged."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from actors.lifecycle import JobState
from actors.scheduler.store.base import UnreadableRow, recovery_problem
from actors.scheduler.store.sqlite_rows import _COLUMNS, _KINDS, job_from_row

# A QUEUED job as corral writes it, in JOB_COLUMNS order.
GOOD: dict[str, Any] = {
    "id": 7, "task": "t", "args": b"\x91\x01", "kwargs": b"\x80", "priority": 3,
    "queue": "default", "depends_on": b"\x92\x01\x02", "max_retries": 2,
    "idempotency_key": "k", "timeout": 5.0, "created_at": 1_700_000_000.5,
    "status": "QUEUED", "attempts": 1, "token": 4, "worker": "w1", "started_at": None,
    "finished_at": None, "not_before": 0.0, "result": b"\xc3", "error": None,
    "backoff_base": 0.5, "backoff_factor": 2.0, "backoff_cap": 30.0, "workflow_id": 9,
    "step": "s", "owner": "", "concurrency_key": "key", "max_concurrent": 2,
}  # fmt: skip


def row(**changed: Any) -> tuple[Any, ...]:
    values = {**GOOD, **changed}
    return tuple(values[column] for column in _COLUMNS)


def test_a_row_corral_writes_reads_back_as_its_job() -> None:
    job = job_from_row(row())
    assert (job.id, job.task, job.priority, job.queue, job.max_retries) == (7, "t", 3, "default", 2)
    assert (job.args, job.kwargs, job.depends_on) == (b"\x91\x01", b"\x80", (1, 2))
    assert job.status is JobState.QUEUED
    assert (job.attempts, job.token, job.worker, job.not_before) == (1, 4, "w1", 0.0)
    assert job.result == msgspec.Raw(b"\xc3")
    assert (job.idempotency_key, job.timeout, job.workflow_id, job.step) == ("k", 5.0, 9, "s")
    assert job.backoff is not None
    assert (job.backoff.base, job.backoff.cap) == (0.5, 30.0)
    assert (job.concurrency_key, job.max_concurrent) == ("key", 2)
    unset = dict.fromkeys(("idempotency_key", "timeout", "workflow_id", "step", "result"))
    backoff = dict.fromkeys(("backoff_base", "backoff_factor", "backoff_cap"))
    plain = job_from_row(row(**unset, **backoff, concurrency_key="", max_concurrent=0))
    assert plain.options is None
    assert plain.result is None
    assert job_from_row(row(created_at=1_700_000_000, not_before=5)).created_at == 1_700_000_000


# For each column, a value SQLite can hold that corral never writes there.
CANDIDATES = ("text", b"blob", 1.5, 7, None)


@pytest.mark.parametrize("index", range(1, len(_COLUMNS)))
def test_a_value_of_the_wrong_type_in_any_column_names_the_job_and_the_column(
    index: int,
) -> None:
    column = _COLUMNS[index]
    allowed, what = _KINDS[index]
    wrong = next(v for v in CANDIDATES if type(v) not in allowed)
    with pytest.raises(UnreadableRow) as refused:
        job_from_row(row(**{column: wrong}))
    assert str(refused.value) == f"job 7: {column} is {wrong!r}, not {what}"


@pytest.mark.parametrize(
    ("changed", "message"),
    [
        ({"status": "BOGUS"}, "job 7: status 'BOGUS' is not a job state"),
        ({"status": "queued"}, "job 7: status 'queued' is not a job state"),
        ({"depends_on": b"\xc1"}, "job 7: depends_on b'\\xc1' is not a list of job ids"),
        ({"depends_on": b"\x91\xa1x"}, "job 7: depends_on b'\\x91\\xa1x' is not a list of job ids"),
        ({"priority": "x" * 100}, f"job 7: priority is '{'x' * 36}..., not an integer"),
    ],
)
def test_a_status_or_dependencies_corral_never_writes_are_refused(
    changed: dict[str, Any], message: str
) -> None:
    with pytest.raises(UnreadableRow) as refused:
        job_from_row(row(**changed))
    assert str(refused.value) == message


def test_the_start_up_totals_refuse_unknown_states_and_times_that_are_no_time() -> None:
    assert recovery_problem({"QUEUED": 3, "SUCCEEDED": 1}, 1_700_000_000.0) is None
    assert recovery_problem({}, None) is None
    assert recovery_problem({"DONE": 2}, 1.0) == "status 'DONE' (on 2 job(s)) is not a job state"
    for when in ("x", b"x", float("inf"), -1.0, 1e12):
        assert recovery_problem({"QUEUED": 1}, when) == (
            f"a job's created, started or finished time is {when!r}, not a time"
        )
