"""What a commit takes (``actors.scheduler.store.write_queue``): leases and results of jobs
already durable go ahead of a bulk submission's inserts; nothing else is reordered."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors.runtime import Actor
from actors.scheduler.messages import Read, Write, Written
from actors.scheduler.ops import Ops
from actors.scheduler.store import write_queue
from actors.scheduler.store.actor import StoreActor
from actors.scheduler.store.sqlite import SqliteStore
from actors.scheduler.store.write_queue import WriteQueue
from tests.store.records import job


def bulk(first: int, count: int, tag: Any = None) -> Write:
    """A submission: ``count`` new jobs from id ``first``."""
    ops = Ops(inserts=[job(i) for i in range(first, first + count)])
    return Write(ops, None, tag if tag is not None else f"bulk{first}")


def lease(*ids: int, tag: Any = None) -> Write:
    """Leases (QUEUED -> RUNNING) of the jobs ``ids``."""
    rows = [("RUNNING", 1, 1, "w", 1.0, None, 0.0, None, None, i, "QUEUED") for i in ids]
    return Write(Ops(updates=rows), None, tag if tag is not None else f"lease{ids}")


def tags(writes: list[Write]) -> list[Any]:
    return [w.tag for w in writes]


def test_a_lease_of_a_durable_job_goes_ahead_of_the_inserts_left_behind() -> None:
    queue = WriteQueue(bulk_budget=4_096)
    queue.extend([bulk(1, 5_000), bulk(5_001, 5_000), bulk(10_001, 5_000), lease(3, 4)])
    writes, _reads = queue.take()
    assert tags(writes) == ["bulk1", "lease(3, 4)"]
    assert queue.went_ahead == 1
    assert tags(queue.take()[0]) == ["bulk5001"]
    assert tags(queue.take()[0]) == ["bulk10001"]
    assert not queue


def test_without_a_bulk_write_left_behind_nothing_is_reordered() -> None:
    queue = WriteQueue(bulk_budget=4_096)
    queue.extend([lease(1), bulk(10, 5), lease(2), bulk(20, 5), lease(3)])
    assert tags(queue.take()[0]) == ["lease(1,)", "bulk10", "lease(2,)", "bulk20", "lease(3,)"]
    assert queue.went_ahead == 0


def test_small_bulk_writes_share_a_commit_up_to_the_budget() -> None:
    queue = WriteQueue(bulk_budget=4_096)
    queue.extend([bulk(1 + 1_000 * i, 1_000) for i in range(10)])
    assert len(queue.take()[0]) == 4
    assert len(queue.take()[0]) == 4
    assert len(queue.take()[0]) == 2


def test_a_write_touching_a_job_left_behind_waits_and_so_does_everything_after_it() -> None:
    queue = WriteQueue(bulk_budget=10)
    cancel = Write(Ops(updates=[("CANCELLED",) + (0,) * 8 + (25, "QUEUED")]), None, "cancel25")
    queue.extend([bulk(1, 10), bulk(21, 10), cancel, lease(5)])
    assert tags(queue.take()[0]) == ["bulk1"]  # lease(5) may not pass the cancel
    assert tags(queue.take()[0]) == ["bulk21", "cancel25", "lease(5,)"]


def test_deletes_and_attempts_count_as_touching_their_jobs() -> None:
    for ops in (
        Ops(deletes=[(15, "SUCCEEDED")]),
        Ops(attempts=[(15, 1, "w", 1.0, 2.0, "failed", "boom")]),
    ):
        queue = WriteQueue(bulk_budget=10)
        queue.extend([bulk(1, 10), bulk(11, 10), Write(ops, None, "touch15")])
        assert tags(queue.take()[0]) == ["bulk1"]
        assert tags(queue.take()[0]) == ["bulk11", "touch15"]


def test_a_write_with_new_jobs_never_goes_ahead() -> None:
    mixed = Write(Ops(inserts=[job(40)], updates=lease(2).ops.updates), None, "mixed")
    edges_only = Write(Ops(edges=[(1, 2)]), None, "edges")
    for late in (mixed, edges_only):
        queue = WriteQueue(bulk_budget=10)
        queue.extend([bulk(1, 10), bulk(11, 10), late])
        assert tags(queue.take()[0]) == ["bulk1"]


def test_a_read_waits_for_every_write_that_arrived_before_it() -> None:
    loop = asyncio.new_event_loop()
    try:
        early, late = (Read(None, loop.create_future()) for _ in range(2))
        queue = WriteQueue(bulk_budget=10)
        queue.extend([early, bulk(1, 10), bulk(11, 10), late, lease(2)])
        writes, reads = queue.take()
        assert tags(writes) == ["bulk1", "lease(2,)"]
        assert reads == [early]
        writes, reads = queue.take()
        assert tags(writes) == ["bulk11"]
        assert reads == [late]
    finally:
        loop.close()


def test_a_commit_looks_only_so_far_past_what_it_leaves_behind(monkeypatch: Any) -> None:
    monkeypatch.setattr(write_queue, "LOOK_AHEAD", 3)
    queue = WriteQueue(bulk_budget=1)
    queue.extend([bulk(i, 1) for i in range(1, 6)] + [lease(0)])
    assert tags(queue.take()[0]) == ["bulk1"]  # three left behind: the lease is out of sight
    assert tags(queue.take()[0]) == ["bulk2"]
    assert tags(queue.take()[0]) == ["bulk3", "lease(0,)"]  # two left behind: in sight
    assert tags(queue.take()[0]) == ["bulk4"]
    assert tags(queue.take()[0]) == ["bulk5"]
    assert not queue


# A random stream of writes, as the scheduler makes them: submissions of new jobs (ids in
# creation order) and writes that change jobs created earlier.
@st.composite
def streams(draw: st.DrawFn) -> list[Write]:
    writes: list[Write] = []
    next_id = 1
    for n in range(draw(st.integers(1, 40))):
        if next_id == 1 or draw(st.booleans()):
            count = draw(st.integers(1, 30))
            writes.append(bulk(next_id, count, tag=n))
            next_id += count
        else:
            ids = draw(st.lists(st.integers(1, next_id - 1), min_size=1, max_size=5))
            writes.append(lease(*ids, tag=n))
    return writes


def _touched(write: Write) -> set[int]:
    ops: Ops = write.ops
    return {j.id for j in ops.inserts} | {row[-2] for row in ops.updates}


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(streams(), st.integers(1, 40))
def test_every_write_commits_once_after_every_earlier_write_it_depends_on(
    stream: list[Write], budget: int
) -> None:
    queue = WriteQueue(bulk_budget=budget)
    queue.extend(stream)
    position: dict[Any, tuple[int, int]] = {}  # tag -> (commit, place in it)
    for commit in range(len(stream) + 1):
        if not queue:
            break
        writes, _ = queue.take()
        assert writes, "a commit always takes something while writes wait"
        for place, write in enumerate(writes):
            assert write.tag not in position
            position[write.tag] = (commit, place)
    assert len(position) == len(stream)
    for later_index, later in enumerate(stream):
        for earlier in stream[:later_index]:
            new_jobs = bool(later.ops.inserts) and bool(earlier.ops.inserts)
            if new_jobs or _touched(later) & _touched(earlier):
                assert position[earlier.tag] < position[later.tag], (earlier.tag, later.tag)


class Inbox(Actor):
    pass


async def test_the_store_commits_a_lease_before_the_rest_of_a_bulk_submission(
    tmp_path: Path,
) -> None:
    """On a real file: the lease behind three submissions is acknowledged after the first
    one's commit, not after all three; every row is written and nothing is inconsistent."""
    store = StoreActor(SqliteStore(str(tmp_path / "c.db")))
    await store.open()
    inbox = Inbox()
    task = asyncio.create_task(store._run())
    try:
        store.tell(Write(bulk(1, 10).ops, inbox, "first"))
        assert (await asyncio.wait_for(inbox.mailbox.get(), 5)).tags == ["first"]
        if store._chain is not None:  # until the chain that committed "first" has ended
            await asyncio.wait_for(asyncio.wait([store._chain]), 5)
        # Told with no await between them: the next chain finds all four waiting.
        for first in (11, 5_011, 10_011):
            store.tell(Write(bulk(first, 5_000).ops, inbox, f"bulk{first}"))
        store.tell(Write(lease(3).ops, inbox, "lease3"))
        replies: list[Any] = []
        while sum(len(r.tags) for r in replies) < 4:
            reply = await asyncio.wait_for(inbox.mailbox.get(), 10)
            assert isinstance(reply, Written)
            replies.append(reply)
        assert [r.tags for r in replies] == [
            ["bulk11", "lease3"],
            ["bulk5011"],
            ["bulk10011"],
        ]
        backend = store.backend
        assert isinstance(backend, SqliteStore)
        assert backend.db is not None
        rows = await backend.db.execute_fetchall("SELECT status, count(*) FROM jobs GROUP BY 1")
        assert sorted(tuple(r) for r in rows) == [("QUEUED", 15_009), ("RUNNING", 1)]
    finally:
        task.cancel()
        await store.on_stop()
