"""Plain binds for the SQLite write path (issue 19): the statements and parameter rows that
insert and update jobs with nothing but exact ``int``, ``float``, ``str`` and ``bytearray``
values bound.

Why: Python's sqlite3 binds those four types directly, and sends every other value (``None``,
``bytes``, ``msgspec.Raw``, a ``StrEnum`` state) through its adapter lookup first, a tuple
built, a dictionary probed and two attribute lookups, about 0.45 us per value on this
machine (``bytearray(raw)`` costs 0.08, a state looked up as a plain string 0.04). A job bound
about 25 such values over its insert, lease and success, so the write path sends:

- states as plain strings (``PLAIN_STATE``), blobs as ``bytearray`` copies;
- no ``None`` at all: a column whose value is None is left out of the INSERT (its default
  is NULL) and written as a literal ``NULL`` in an UPDATE, so each combination of absent
  values (a row's *shape*) has its own statement, built once and cached here and in
  sqlite3's statement cache. The hot path has two or three shapes.

The columns, their meaning and what a read gives back are unchanged: this is only how the
values reach SQLite.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import compress
from operator import is_not
from typing import Any

import msgspec

from actors.lifecycle import JobState
from actors.scheduler.job import Job
from actors.scheduler.ops import CHANGED_FIELDS

# A state as an exact str (a StrEnum member is a subclass: sqlite3 would adapt it). Keyed by
# the members, found by plain strings too (equal hashes, equal values).
PLAIN_STATE: dict[str, str] = {state: state.value for state in JobState}

_encode_ids = msgspec.msgpack.Encoder().encode_into
_NO_IDS = bytearray(b"\x90")  # msgpack's empty array; bound, never changed

# An INSERT's columns: those a job always has, then those it may lack (None).
_REQUIRED = (
    "id, task, args, kwargs, priority, queue, depends_on, max_retries, created_at, status, "
    "attempts, token, not_before, owner, concurrency_key, max_concurrent"
)
_OPTIONAL = (
    "idempotency_key",
    "timeout",
    "worker",
    "started_at",
    "finished_at",
    "result",
    "error",
    "backoff_base",
    "backoff_factor",
    "backoff_cap",
    "workflow_id",
    "step",
)
_NONE_OPTIONAL = (None,) * len(_OPTIONAL)
_NO_OPTIONAL = (False,) * len(_OPTIONAL)
_N_REQUIRED = len(_REQUIRED.split(","))

# An update row (``Job.update_row``): CHANGED_FIELDS, id, expected status; these of its
# positions may be None.
_NULLABLE = tuple(
    CHANGED_FIELDS.index(f) for f in ("worker", "started_at", "finished_at", "result", "error")
)

_insert_sql: dict[tuple[bool, ...], str] = {}
_update_sql: dict[tuple[bool, ...], str] = {}


def blob(value: Any) -> bytearray:
    """``value`` (bytes, ``msgspec.Raw``) as the one blob type sqlite3 binds directly."""
    return bytearray(value)


def _ids(ids: tuple[int, ...]) -> bytearray:
    if not ids:
        return _NO_IDS
    packed = bytearray()
    _encode_ids(list(ids), packed)
    return packed


def insert_sql(shape: tuple[bool, ...]) -> str:
    """The INSERT for rows whose optional columns are present where ``shape`` is True."""
    sql = _insert_sql.get(shape)
    if sql is None:
        present = [name for name, here in zip(_OPTIONAL, shape, strict=True) if here]
        columns = ", ".join([_REQUIRED, *present])
        marks = ", ".join("?" * (_N_REQUIRED + len(present)))
        sql = _insert_sql[shape] = f"INSERT INTO jobs ({columns}) VALUES ({marks})"
    return sql


def insert_rows(jobs: Iterable[Job]) -> dict[tuple[bool, ...], list[tuple[Any, ...]]]:
    """New jobs' parameter rows, by shape (``insert_sql``); no None, no adapted type."""
    groups: dict[tuple[bool, ...], list[tuple[Any, ...]]] = {}
    for job in jobs:
        backoff = job.backoff
        result = job.result
        optional = (
            job.idempotency_key,
            job.timeout,
            job.worker,
            job.started_at,
            job.finished_at,
            None if result is None else bytearray(result),
            job.error,
            None if backoff is None else backoff.base,
            None if backoff is None else backoff.factor,
            None if backoff is None else backoff.cap,
            job.workflow_id,
            job.step,
        )
        row: tuple[Any, ...] = (
            job.id,
            job.task,
            bytearray(job.args),
            bytearray(job.kwargs),
            job.priority,
            job.queue,
            _ids(job.depends_on),
            job.max_retries,
            job.created_at,
            PLAIN_STATE[job.status],
            job.attempts,
            job.token,
            job.not_before,
            job.owner,
            job.concurrency_key,
            job.max_concurrent,
        )
        if optional == _NONE_OPTIONAL:  # the hot path: a plain job, not yet leased
            shape = _NO_OPTIONAL
        else:  # in C: no generator per job
            shape = tuple(map(is_not, optional, _NONE_OPTIONAL))
            row += tuple(compress(optional, shape))
        group = groups.get(shape)
        if group is None:
            groups[shape] = [row]
        else:
            group.append(row)
    return groups


def update_sql(shape: tuple[bool, ...]) -> str:
    """The compare-and-swap UPDATE for rows whose nullable fields are present where
    ``shape`` is True (the absent ones are set to a literal NULL)."""
    sql = _update_sql.get(shape)
    if sql is None:
        absent = {i for i, here in zip(_NULLABLE, shape, strict=True) if not here}
        sets = ", ".join(
            f"{name}=NULL" if i in absent else f"{name}=?" for i, name in enumerate(CHANGED_FIELDS)
        )
        sql = _update_sql[shape] = f"UPDATE jobs SET {sets} WHERE id=? AND status=?"
    return sql


def update_runs(updates: list[tuple[Any, ...]]) -> Iterator[tuple[str, list[tuple[Any, ...]]]]:
    """Compare-and-swap updates as (statement, rows) runs, in the batch's order (a job's
    lease and its success may both be in it: the second must find the first's state)."""
    sql = ""
    run: list[tuple[Any, ...]] = []
    plain = PLAIN_STATE
    for (
        status,
        attempts,
        token,
        worker,
        started,
        finished,
        not_before,
        result,
        error,
        job_id,
        expected,
    ) in updates:
        shape = (
            worker is not None,
            started is not None,
            finished is not None,
            result is not None,
            error is not None,
        )
        statement = _update_sql.get(shape) or update_sql(shape)
        if statement is not sql:
            if run:
                yield sql, run
            sql, run = statement, []
        row: list[Any] = [plain[status], attempts, token]
        if worker is not None:
            row.append(worker)
        if started is not None:
            row.append(started)
        if finished is not None:
            row.append(finished)
        row.append(not_before)
        if result is not None:
            row.append(bytearray(result))
        if error is not None:
            row.append(error)
        row.append(job_id)
        row.append(plain[expected])
        run.append(tuple(row))
    if run:
        yield sql, run
