"""The context a handler sees (``actors.worker.tasks.job_context``): built through the
dataclass's slots rather than its __init__ (half the time), it must be the same object in
every way a handler can tell."""

from __future__ import annotations

import asyncio
import dataclasses
import pickle

import msgspec
import pytest

from actors.worker.tasks import JobContext, job_context
from transport import protocol as wire
from transport.payloads import ParentResult

RAW = msgspec.Raw(b"\x90")

ASSIGNMENTS = [
    wire.Assignment(7, 3, "t", RAW, msgspec.Raw(b"\x80"), 2),
    wire.Assignment(
        8, 1, "t", RAW, msgspec.Raw(b"\x80"), 1, idempotency_key="k-8", timeout=5.0,
        parents=[
            ParentResult(5, "fetch", msgspec.Raw(msgspec.msgpack.encode({"rows": 3}))),
            ParentResult(6, None, msgspec.Raw(msgspec.msgpack.encode([1, 2]))),
        ],
        step="load", workflow_id=40,
    ),
]  # fmt: skip


def by_constructor(a: wire.Assignment, worker: str) -> JobContext:
    parents = {p.job_id: msgspec.msgpack.decode(p.result) for p in a.parents}
    steps = {p.step: parents[p.job_id] for p in a.parents if p.step is not None}
    return JobContext(
        a.job_id, a.token, a.attempt, a.idempotency_key, worker,
        parents, steps, a.workflow_id, a.step,
    )  # fmt: skip


@pytest.mark.parametrize("a", ASSIGNMENTS, ids=["plain", "a workflow step with parents"])
async def test_the_built_context_is_what_its_constructor_makes(a: wire.Assignment) -> None:
    loop = asyncio.get_running_loop()
    reports: list[tuple[int, int, float, str]] = []
    ctx = job_context(a, "w1", loop, lambda *report: reports.append(report))
    expected = by_constructor(a, "w1")
    for f in dataclasses.fields(JobContext):
        getattr(ctx, f.name)  # every slot is set (an unset one raises AttributeError)
    assert ctx == expected  # every field but the reporter, which compare=False leaves out
    assert repr(ctx) == repr(expected)
    with pytest.raises(dataclasses.FrozenInstanceError):
        ctx.job_id = 99  # type: ignore[misc]
    # Progress reaches the worker's record on its loop, from any thread.
    ctx.progress(0.5, "halfway")
    await asyncio.sleep(0)
    assert reports == [(a.job_id, a.token, 0.5, "halfway")]
    # What the process pool does with it: a copy without the reporter, pickled to a child.
    plain = dataclasses.replace(ctx, reporter=None)
    assert pickle.loads(pickle.dumps(plain)) == expected


async def test_a_context_is_unhashable_like_the_constructors() -> None:
    # parents and steps are dicts, so neither kind hashes: the built one fails the same way.
    a = ASSIGNMENTS[0]
    with pytest.raises(TypeError, match="unhashable type: 'dict'"):
        hash(by_constructor(a, "w"))
    with pytest.raises(TypeError, match="unhashable type: 'dict'"):
        hash(job_context(a, "w", asyncio.get_running_loop(), lambda *r: None))
