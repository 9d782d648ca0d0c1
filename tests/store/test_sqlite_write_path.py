"""The SQLite write path's cheap shapes (issue 19): what it binds. The costs themselves are
measured by ``python -m bench.write_path``, not asserted here; these tests hold the
properties that make them cheap."""

from __future__ import annotations

from typing import Any

import msgspec

from actors.config import SchedulerConfig
from actors.lifecycle import QUEUED
from actors.scheduler.jobs import JobTable
from actors.scheduler.ops import Ops
from actors.scheduler.store.sqlite_binds import insert_rows, update_runs
from transport import protocol as wire

# The only types Python's sqlite3 binds without its adapter lookup (no None either).
PLAIN = (int, float, str, bytearray)


def plain(row: tuple[Any, ...]) -> bool:
    return all(type(value) in PLAIN for value in row)


def spec(**fields: Any) -> wire.JobSpec:
    return wire.JobSpec("bench.noop", **fields)


def test_inserts_and_updates_bind_only_plain_values() -> None:
    table = JobTable(SchedulerConfig())
    ops = Ops()
    bare = table.create(spec(), ops)
    table.move(bare, QUEUED, ops)
    full = table.create(
        spec(
            idempotency_key="k",
            timeout=2.5,
            backoff=wire.Backoff(1.0, 2.0, 30.0),
            concurrency_key="c",
            max_concurrent=2,
            depends_on=[bare.id],
        ),
        ops,
        workflow_id=7,
        step="load",
        owner="me",
    )
    ops.seal()
    groups = insert_rows(ops.inserts)
    assert len(groups) == 2, "one statement per shape of absent values"
    assert all(plain(row) for rows in groups.values() for row in rows)
    later = Ops()
    table.lease(bare.id, b"peer", "w1", later)
    table.succeed(bare, msgspec.Raw(b"\x01"), later)
    table.cancel(full, later)
    runs = list(update_runs(later.updates))
    assert [len(rows) for _, rows in runs] == [1, 1, 1], "in order: lease, success, cancel"
    assert all(plain(row) for _, rows in runs for row in rows)
    assert "finished_at=NULL" in runs[0][0], "an absent value is a literal NULL"
    assert [row[-1] for _, rows in runs for row in rows] == ["QUEUED", "RUNNING", "PENDING"]
