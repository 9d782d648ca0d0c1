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

Many rows per statement: Python's sqlite3 releases the GIL around every ``sqlite3_step``, so
an ``executemany`` of 256 rows gives it up and waits to take it back 256 times, each time
behind the event loop's thread (in a throughput run a commit of about 230 rows took 4 ms,
against about 1.2 ms for the same rows with no other thread running). So rows are written
by statements of many rows each (``statements``): an INSERT with one VALUES group per row,
and an ``UPDATE ... FROM (VALUES ...)`` that joins each row to its job by id and still
compares its expected status (the caller counts the rows changed: a compare-and-swap that
misses leaves the count short). Statements hold up to ``ROWS_PER_STATEMENT`` rows, in pieces
of 64, 32, ..., 4 rows so that a few statements, each prepared once, serve every batch size
(fewer than four update rows go one statement each: ``FEWEST_JOINED_ROWS``);
an UPDATE statement never holds one job twice (the second row of a job waits for the next
statement, so rows of one job still apply in their order).

The columns, their meaning and what a read gives back are unchanged: this is only how the
values reach SQLite.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from itertools import chain, compress
from operator import is_not
from typing import Any

import msgspec

from actors.lifecycle import JobState
from actors.scheduler.job import NO_ARGS, NO_KWARGS, Job, JobOptions
from actors.scheduler.ops import CHANGED_FIELDS

# A state as an exact str (a StrEnum member is a subclass: sqlite3 would adapt it). Keyed by
# the members, found by plain strings too (equal hashes, equal values).
PLAIN_STATE: dict[str, str] = {state: state.value for state in JobState}

_encode_ids = msgspec.msgpack.Encoder().encode_into
_NO_IDS = bytearray(b"\x90")  # msgpack's empty array; bound, never changed
_NO_ARGS_BLOB, _NO_KWARGS_BLOB = bytearray(NO_ARGS), bytearray(NO_KWARGS)  # the same

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
_many_sql: dict[tuple[str, int], str] = {}


def rows_per_statement(version: tuple[int, int, int]) -> int:
    """The most rows one statement writes with the SQLite library at ``version``: 64 (a
    power of two; at most 64 x 28 bound values), or 1 before SQLite 3.33, which lacks
    ``UPDATE ... FROM`` and (before 3.32) binds at most 999 values per statement."""
    return 64 if version >= (3, 33, 0) else 1


ROWS_PER_STATEMENT = rows_per_statement(sqlite3.sqlite_version_info)
# Fewer update rows than this go one statement each: ``UPDATE ... FROM (VALUES ...)`` costs
# about 18 us for one row against 10 for ``UPDATE ... WHERE id = ?``, and breaks even at
# about four rows (this machine, a warm table), so the rare commit of one or two updates
# (a low submission rate) keeps the plain statement.
FEWEST_JOINED_ROWS = 4


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


def _required_row(job: Job, options: JobOptions) -> tuple[Any, ...]:
    """A new job's values of the ``_REQUIRED`` columns, in their order."""
    args, kwargs = job.args, job.kwargs
    return (
        job.id,
        job.task,
        _NO_ARGS_BLOB if args is NO_ARGS else bytearray(args),
        _NO_KWARGS_BLOB if kwargs is NO_KWARGS else bytearray(kwargs),
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
        options.concurrency_key,
        options.max_concurrent,
    )


def insert_rows(jobs: Iterable[Job]) -> dict[tuple[bool, ...], list[tuple[Any, ...]]]:
    """New jobs' parameter rows, by shape (``insert_sql``); no None, no adapted type."""
    groups: dict[tuple[bool, ...], list[tuple[Any, ...]]] = {}
    plain: list[tuple[Any, ...]] = []  # the hot path: no option set, not yet leased
    for job in jobs:
        options = job.opts
        if (
            job.options is None
            and job.worker is None
            and job.started_at is None
            and job.finished_at is None
            and job.result is None
            and job.error is None
        ):
            plain.append(_required_row(job, options))
            continue
        backoff = options.backoff
        result = job.result
        optional = (
            options.idempotency_key,
            options.timeout,
            job.worker,
            job.started_at,
            job.finished_at,
            None if result is None else bytearray(result),
            job.error,
            None if backoff is None else backoff.base,
            None if backoff is None else backoff.factor,
            None if backoff is None else backoff.cap,
            options.workflow_id,
            options.step,
        )
        row = _required_row(job, options)
        if optional == _NONE_OPTIONAL:  # no value absent: the shape of a plain job
            shape = _NO_OPTIONAL
        else:  # in C: no generator per job
            shape = tuple(map(is_not, optional, _NONE_OPTIONAL))
            row += tuple(compress(optional, shape))
        group = groups.get(shape)
        if group is None:
            groups[shape] = [row]
        else:
            group.append(row)
    if plain:
        groups.setdefault(_NO_OPTIONAL, []).extend(plain)
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
    """Compare-and-swap updates as (one-row statement, rows) runs, in the batch's order (a
    job's lease and its success may both be in it: the second must find the first's state)."""
    for shape, rows in _shape_runs(updates):
        yield update_sql(shape), rows


# The two hot shapes of an update row (``update_sql``): a lease sets its worker and start,
# a success its worker, start, end and result; neither has an error.
_LEASED = (True, True, False, False, False)
_SUCCEEDED = (True, True, True, True, False)


def _shape_runs(
    updates: list[tuple[Any, ...]],
) -> Iterator[tuple[tuple[bool, ...], list[tuple[Any, ...]]]]:
    """Updates as runs of one shape each (their parameter rows: no None), in order."""
    current: tuple[bool, ...] = ()  # no run yet
    run: list[tuple[Any, ...]] = []
    plain = PLAIN_STATE
    shape: tuple[bool, ...]
    row: tuple[Any, ...]
    for update in updates:
        (status, attempts, token, worker, started, finished, not_before, result, error,
         job_id, expected) = update  # fmt: skip
        # A lease's or a success's row in one step; any other through ``_shaped``.
        if error is None and worker is not None and started is not None and finished is None:
            if result is None:
                shape = _LEASED
                row = (plain[status], attempts, token, worker, started, not_before, job_id,
                       plain[expected])  # fmt: skip
            else:
                shape, row = _shaped(update)
        elif error is None and worker is not None and started is not None and result is not None:
            shape = _SUCCEEDED
            row = (plain[status], attempts, token, worker, started, finished, not_before,
                   bytearray(result), job_id, plain[expected])  # fmt: skip
        else:
            shape, row = _shaped(update)
        if shape != current:
            if run:
                yield current, run
            current, run = shape, []
        run.append(row)
    if run:
        yield current, run


def _shaped(update: tuple[Any, ...]) -> tuple[tuple[bool, ...], tuple[Any, ...]]:
    """Any update row as (shape, its parameters with no None)."""
    (status, attempts, token, worker, started, finished, not_before, result, error, job_id,
     expected) = update  # fmt: skip
    shape = (
        worker is not None,
        started is not None,
        finished is not None,
        result is not None,
        error is not None,
    )
    row: list[Any] = [PLAIN_STATE[status], attempts, token]
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
    row.append(PLAIN_STATE[expected])
    return shape, tuple(row)


def _pieces(rows: list[tuple[Any, ...]]) -> Iterator[list[tuple[Any, ...]]]:
    """``rows`` in pieces of ROWS_PER_STATEMENT, then 32, 16, ..., 1 rows."""
    start, end = 0, len(rows)
    while start < end:
        size = min(ROWS_PER_STATEMENT, 1 << ((end - start).bit_length() - 1))
        yield rows[start : start + size]
        start += size


def many_values_sql(one_row: str, count: int) -> str:
    """A one-row ``INSERT ... VALUES (?, ...)`` (any statement ending in one VALUES group)
    for ``count`` rows in one statement."""
    key = (one_row, count)
    sql = _many_sql.get(key)
    if sql is None:
        head, _, group = one_row.partition(" VALUES ")
        sql = _many_sql[key] = f"{head} VALUES {', '.join([group] * count)}"
    return sql


def many_values(one_row: str, rows: list[tuple[Any, ...]]) -> Iterator[tuple[str, list[Any]]]:
    """The rows of a one-row INSERT as (statement, parameters), many rows per statement."""
    for piece in _pieces(rows):
        yield many_values_sql(one_row, len(piece)), list(chain.from_iterable(piece))


def update_many_sql(shape: tuple[bool, ...], count: int) -> str:
    """The compare-and-swap of ``update_sql(shape)`` for ``count`` rows (distinct jobs) in
    one statement: each VALUES row is joined to its job by id and expected status."""
    key = (update_sql(shape), count)
    sql = _many_sql.get(key)
    if sql is None:
        absent = {i for i, here in zip(_NULLABLE, shape, strict=True) if not here}
        sets: list[str] = []
        width = 0  # the VALUES columns: the present fields, then id and expected status
        for i, name in enumerate(CHANGED_FIELDS):
            if i in absent:
                sets.append(f"{name}=NULL")
            else:
                width += 1
                sets.append(f"{name}=v.column{width}")
        width += 2
        group = "(" + ", ".join("?" * width) + ")"
        sql = _many_sql[key] = (
            f"UPDATE jobs SET {', '.join(sets)} FROM (VALUES {', '.join([group] * count)}) AS v "
            f"WHERE jobs.id=v.column{width - 1} AND jobs.status=v.column{width}"
        )
    return sql


def insert_statements(jobs: Iterable[Job]) -> Iterator[tuple[str, list[Any]]]:
    """New jobs' INSERTs as (statement, parameters), many rows per statement."""
    for shape, rows in insert_rows(jobs).items():
        yield from many_values(insert_sql(shape), rows)


def update_statements(updates: list[tuple[Any, ...]]) -> Iterator[tuple[str, list[Any]]]:
    """Compare-and-swap updates as (statement, parameters), in the batch's order, many rows
    per statement and never one job twice in a statement; the caller checks that as many
    rows changed as there are updates."""
    for shape, rows in _shape_runs(updates):
        chunk: list[tuple[Any, ...]] = []
        ids: set[int] = set()
        for row in rows:
            job_id = row[-2]
            if job_id in ids:  # the job's earlier row must apply first: a statement apart
                yield from _update_pieces(shape, chunk)
                chunk, ids = [], set()
            chunk.append(row)
            ids.add(job_id)
        yield from _update_pieces(shape, chunk)


def _update_pieces(
    shape: tuple[bool, ...], rows: list[tuple[Any, ...]]
) -> Iterator[tuple[str, list[Any]]]:
    for piece in _pieces(rows):
        if len(piece) < FEWEST_JOINED_ROWS:  # a join costs more than it saves: one by one
            one_row = update_sql(shape)
            for row in piece:
                yield one_row, list(row)
        else:
            yield update_many_sql(shape, len(piece)), list(chain.from_iterable(piece))
