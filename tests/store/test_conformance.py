"""What every store backend must do with the batches it commits: keep every field, apply
compare-and-swap updates and deletes only over the expected status, and apply a batch
whole or not at all, also across a restart. Run against every backend in conftest.py;
only the store interface is used (``Ops`` in, typed reads out, no SQL)."""

from __future__ import annotations

import msgspec
import pytest

from actors.errors import StoreInconsistent
from actors.scheduler.ops import Ops
from actors.scheduler.store.base import AttemptRecord, StoreBackend, WorkflowRecord
from tests.store.conftest import StoreFactory
from tests.store.records import (
    C,
    F,
    P,
    Q,
    R,
    S,
    as_read,
    assert_same_job,
    attempt,
    commit,
    full_job,
    job,
    moved,
    snapshot,
)


async def test_a_job_with_every_field_set_reads_back_equal_field_by_field(
    store_factory: StoreFactory,
) -> None:
    store = await store_factory.open()
    everything, bare = full_job(1), job(2)
    await commit(store, inserts=[everything, bare])
    for _ in range(2):  # as committed, then after a restart
        got = {j.id: j for j in await store.jobs([1, 2])}
        assert_same_job(got[1], as_read(everything))
        assert_same_job(got[2], as_read(bare))
        store = await store_factory.restart(store)


async def test_a_compare_and_swap_update_sets_every_changed_field(
    store_factory: StoreFactory,
) -> None:
    store = await store_factory.open()
    before = job(1, R, attempts=1, token=1, worker="w", started_at=5.0)
    await commit(store, inserts=[before])
    after, update = moved(
        before,
        F,
        attempts=2,
        token=2,
        worker="w2",
        started_at=6.0,
        finished_at=7.0,
        not_before=8.0,
        result=msgspec.Raw(b"\x91\x01"),
        error="boom",
    )
    await commit(store, updates=[update])
    assert_same_job((await store.jobs([1]))[0], as_read(after))
    # and back to no result, no error, no worker: None is written, not skipped
    again, update = moved(after, P, worker=None, finished_at=None, result=None, error=None)
    await commit(store, updates=[update])
    store = await store_factory.restart(store)
    assert_same_job((await store.jobs([1]))[0], as_read(again))
    # A status given as its plain string (a StrEnum's value) works the same way.
    queued, update = moved(again, Q)
    await commit(store, updates=[(str(Q), *update[1:-1], str(P))])
    assert_same_job((await store.jobs([1]))[0], as_read(queued))


async def test_a_job_inserted_and_leased_in_one_batch_is_stored_leased(
    store: StoreBackend,
) -> None:
    # The job table's pattern: one writer's sealed insert (QUEUED) and another writer's
    # lease of it (QUEUED -> RUNNING), merged into one commit by the store actor.
    created = job(1, Q)
    first = Ops(new_jobs=[created])
    batch = Ops()
    batch.extend(first.seal())
    created.status, created.token, created.attempts, created.worker = R, 1, 1, "w"
    leased = Ops(updates=[created.update_row(Q)])
    batch.extend(leased)
    # a job updated twice in one batch: each update sees the one before it
    done, finish = moved(as_read(created), S, finished_at=2.0, result=msgspec.Raw(b"\xc0"))
    batch.extend(Ops(updates=[finish]))
    await store.commit(batch)
    assert_same_job((await store.jobs([1]))[0], as_read(done))


def _refused_batch(spoiler: str) -> Ops:
    """A batch every part of which would apply to the store ``_populate`` builds, plus one
    operation (``spoiler``) that must make the store refuse all of it."""
    ops = Ops(
        workflows=[(2, "wf2", "flow-2", 6.0)],
        inserts=[job(5, Q, key="k5", depends_on=(1,), workflow_id=2, step="a")],
        edges=[(1, 5)],
        updates=[
            moved(job(1, Q, key="k1", workflow_id=1), R, token=1)[1],
            moved(job(5, Q), R, token=1)[1],  # inserted in this same batch
        ],
        attempts=[attempt(2, 1, "replaced"), attempt(2, 2)],
        deletes=[(3, S)],
    )
    match spoiler:
        case "none":
            pass
        case "update expecting another status":
            ops.updates.insert(1, moved(job(2, Q), R)[1])  # job 2 is RUNNING
        case "update of a missing job":
            ops.updates.insert(1, moved(job(77, Q), R)[1])
        case "delete expecting another status":
            ops.deletes.insert(0, (4, Q))  # job 4 is FAILED
        case "delete of a missing job":
            ops.deletes.append((77, F))
        case "insert of an existing id":
            ops.inserts.append(job(2, Q))
        case "insert of an existing key":
            ops.inserts.append(job(6, Q, key="k1"))
        case "two inserts of one key":
            ops.inserts += [job(6, Q, key="k6"), job(7, Q, key="k6")]
        case "workflow with an existing id":
            ops.workflows.append((1, "again", None, 7.0))
        case "workflow with an existing key":
            ops.workflows.append((3, "again", "flow-1", 7.0))
    return ops


async def _populate(store: StoreBackend) -> None:
    await commit(
        store,
        workflows=[(1, "wf", "flow-1", 5.0)],
        inserts=[
            job(1, Q, key="k1", workflow_id=1),
            job(2, R, token=1, attempts=1, worker="w", started_at=3.0),
            job(3, S, finished_at=4.0),
            job(4, F, depends_on=(3,)),
        ],
        edges=[(3, 4)],
        attempts=[attempt(2, 1), attempt(4, 1)],
    )


SPOILERS = [
    "update expecting another status",
    "update of a missing job",
    "delete expecting another status",
    "delete of a missing job",
    "insert of an existing id",
    "insert of an existing key",
    "two inserts of one key",
    "workflow with an existing id",
    "workflow with an existing key",
]


@pytest.mark.parametrize("spoiler", SPOILERS)
async def test_one_refused_operation_leaves_nothing_of_its_batch_behind(
    store_factory: StoreFactory, spoiler: str
) -> None:
    store = await store_factory.open()
    await _populate(store)
    seen = ([1, 2, 3, 4, 5, 6, 7, 77], ["k1", "k5", "k6"], [1, 2, 3])
    before = await snapshot(store, *seen)
    with pytest.raises(StoreInconsistent):
        await store.commit(_refused_batch(spoiler))
    assert await snapshot(store, *seen) == before
    store = await store_factory.restart(store)
    assert await snapshot(store, *seen) == before, "nothing of it after a restart either"
    # The store goes on: the same batch without its spoiler applies whole.
    await store.commit(_refused_batch("none"))
    await _check_the_good_batch(store)
    store = await store_factory.restart(store)
    await _check_the_good_batch(store)


async def _check_the_good_batch(store: StoreBackend) -> None:
    jobs = {j.id: j for j in await store.jobs(range(1, 8))}
    assert sorted(jobs) == [1, 2, 4, 5], "job 3 deleted"
    assert (jobs[1].status, jobs[1].token) == (R, 1)
    assert (jobs[5].status, jobs[5].token, jobs[5].step) == (R, 1, "a")
    assert await store.ids_by_key(["k1", "k5"]) == {"k1": 1, "k5": 5}
    assert await store.children([1, 3]) == [5], "job 3 took its edge along"
    assert [(a.token, a.outcome) for a in await store.attempts(2)] == [
        (1, "replaced"),
        (2, "failed"),
    ]
    assert await store.workflow(2) == WorkflowRecord(2, "wf2", "flow-2", 6.0)
    assert [j.id for j in await store.workflow_jobs(2)] == [5]


async def test_a_delete_takes_the_jobs_attempts_and_edges_and_nothing_else(
    store_factory: StoreFactory,
) -> None:
    store = await store_factory.open()
    await commit(
        store,
        inserts=[job(1, S), job(2, F, depends_on=(1,)), job(3, Q, depends_on=(2,)), job(4, Q)],
        edges=[(1, 2), (2, 3), (1, 4)],
        attempts=[attempt(1, 1), attempt(2, 1), attempt(2, 2), attempt(3, 1)],
    )
    await commit(store, deletes=[(2, F)])
    for _ in range(2):
        assert sorted(j.id for j in await store.jobs([1, 2, 3, 4])) == [1, 3, 4]
        assert await store.attempts(2) == []
        assert [a.token for a in await store.attempts(1)] == [1]
        assert [a.token for a in await store.attempts(3)] == [1]
        assert await store.children([1]) == [4], "the edge to the deleted child went"
        assert await store.children([2]) == [], "the edges from the deleted parent went"
        assert await store.job_ids(F) == []
        store = await store_factory.restart(store)
    # A delete sees the updates before it in its batch (expected: the status they set).
    _, cancel = moved(job(3, Q), C)
    await commit(store, updates=[cancel], deletes=[(3, C)])
    assert sorted(j.id for j in await store.jobs([1, 3, 4])) == [1, 4]
    assert (await store.recover()).counts == {"SUCCEEDED": 1, "QUEUED": 1}


async def test_attempts_are_kept_per_token_replaced_on_the_same_token_and_read_by_token(
    store_factory: StoreFactory,
) -> None:
    store = await store_factory.open()
    await commit(store, inserts=[job(1, R), job(2, R)])
    await commit(store, attempts=[attempt(1, 3), attempt(2, 1)])
    await commit(store, attempts=[attempt(1, 1), attempt(1, 2, "lease expired")])
    # The same (job, token) again replaces the record, in a later batch or the same one.
    await commit(store, attempts=[attempt(1, 2, "first"), attempt(1, 2, "cancelled")])
    for _ in range(2):
        records = await store.attempts(1)
        assert [a.token for a in records] == [1, 2, 3]
        assert records[1] == AttemptRecord(1, 2, "w2", 20.0, 21.0, "cancelled", "e2")
        assert await store.attempts(2) == [AttemptRecord(*attempt(2, 1))]
        assert await store.attempts(3) == []
        store = await store_factory.restart(store)


async def test_workflows_read_by_id_and_key_and_their_steps_by_id(
    store_factory: StoreFactory,
) -> None:
    store = await store_factory.open()
    await commit(
        store,
        workflows=[(1, "etl", "flow-1", 10.0), (2, "anonymous", None, 11.0)],
        inserts=[
            job(5, Q, workflow_id=1, step="load"),
            job(3, S, workflow_id=1, step="extract"),
            job(4, R, workflow_id=1, step="transform"),
            job(6, Q, workflow_id=2, step="only"),
            job(7, Q),
        ],
    )
    for _ in range(2):
        assert await store.workflow(1) == WorkflowRecord(1, "etl", "flow-1", 10.0)
        assert await store.workflow(2) == WorkflowRecord(2, "anonymous", None, 11.0)
        assert await store.workflow(3) is None
        assert await store.workflow_by_key("flow-1") == WorkflowRecord(1, "etl", "flow-1", 10.0)
        assert await store.workflow_by_key("flow-2") is None
        steps = await store.workflow_jobs(1)
        assert [(j.id, j.step) for j in steps] == [(3, "extract"), (4, "transform"), (5, "load")]
        assert [j.id for j in await store.workflow_jobs(2)] == [6]
        assert await store.workflow_jobs(3) == []
        assert (await store.recover()).max_workflow_id == 2
        store = await store_factory.restart(store)


async def test_children_come_once_each_ascending_from_several_parents(
    store_factory: StoreFactory,
) -> None:
    store = await store_factory.open()
    await commit(
        store,
        inserts=[job(i, P if i > 3 else S) for i in range(1, 10)],
        edges=[(1, 9), (1, 4), (2, 4), (2, 6), (3, 5), (1, 4)],  # (1, 4) twice
    )
    await commit(store, edges=[(2, 6), (3, 8)])  # (2, 6) again, in a later batch
    for _ in range(2):
        assert await store.children([1]) == [4, 9]
        assert await store.children([2, 1, 2]) == [4, 6, 9]
        assert await store.children([1, 2, 3]) == [4, 5, 6, 8, 9]
        assert await store.children([4, 100]) == []
        assert await store.children([]) == []
        store = await store_factory.restart(store)


async def test_a_read_returns_fresh_objects_and_a_committed_job_is_a_copy(
    store: StoreBackend,
) -> None:
    given = full_job(1)
    await commit(store, inserts=[given], attempts=[attempt(1, 1)])
    given.status, given.error = S, "changed after the commit"  # the store kept its own copy
    expected = as_read(full_job(1))
    read = (await store.jobs([1]))[0]
    read.status, read.token, read.depends_on, read.settled = C, 100, (), True
    recovered = await store.recover()
    recovered.counts["FAILED"] = 1000
    (await store.list_jobs())[0].worker = "someone else"
    (await store.workflow_jobs(42))[0].queue = "elsewhere"
    (await store.ids_by_key(["key-1"]))["key-1"] = 5
    assert_same_job((await store.jobs([1]))[0], expected)
    assert (await store.recover()).counts == {"FAILED": 1}
    assert await store.ids_by_key(["key-1"]) == {"key-1": 1}


async def test_closing_twice_is_harmless(store_factory: StoreFactory) -> None:
    store = await store_factory.open()
    await commit(store, inserts=[job(1)])
    await store.close()
    await store.close()
    store = await store_factory.restart(store)
    assert [j.id for j in await store.jobs([1])] == [1]


async def test_rate_limits_are_set_changed_spent_and_removed_across_restarts(
    store_factory: StoreFactory,
) -> None:
    from actors.scheduler.store.base import LimitRecord

    store = await store_factory.open()
    await commit(
        store, limits=[("tasks.mail", (100, 1.0, 100, True)), ("customer-1", (5, 60.0, 2, False))]
    )
    await commit(store, limit_states=[("tasks.mail", 1_700_000_000.5)])
    store = await store_factory.restart(store)
    assert await store.limits() == [
        LimitRecord("customer-1", 5, 60.0, 2, 0.0, declared=False),
        LimitRecord("tasks.mail", 100, 1.0, 100, 1_700_000_000.5, declared=True),
    ]
    # A new rate keeps the bucket's state (an admin's replacing a task's declared one
    # too); a removed limit is gone, and a late state update (a pick committed after the
    # remove) does not bring it back.
    await commit(store, limits=[("tasks.mail", (10, 1.0, 5, False)), ("customer-1", None)])
    await commit(store, limit_states=[("customer-1", 1_700_000_001.0)])
    store = await store_factory.restart(store)
    assert await store.limits() == [LimitRecord("tasks.mail", 10, 1.0, 5, 1_700_000_000.5)]
