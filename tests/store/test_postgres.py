"""What only the PostgreSQL store has to get right, on a real server: text PostgreSQL cannot
hold, big batches with chained updates, its schema steps (two schedulers upgrading one
database together), the session settings, a connection lost under it, and errors that name
the problem. (The election and the fencing of commits are in test_postgres_election.py.) (What every
backend must do is in test_conformance*.py, which runs on PostgreSQL too.)"""

from __future__ import annotations

import asyncio
import logging
import time
import tracemalloc
from collections.abc import AsyncIterator

import asyncpg
import msgspec
import pytest

from actors.errors import StoreError, StoreInconsistent
from actors.scheduler.ops import Ops
from actors.scheduler.store import postgres, postgres_schema
from actors.scheduler.store import postgres_conn as pgconn
from actors.scheduler.store.base import AttemptRecord, UnreadableRow, WorkflowRecord
from actors.scheduler.store.postgres import PostgresStore
from tests.helpers.job_rows import stored_job
from tests.helpers.tcp_proxy import proxy_to
from tests.helpers.turns import Turns
from tests.store.records import F, Q, R, S, commit, job, moved

CURRENT = postgres_schema.SCHEMA_VERSION

ODD = "a\x00b\uffffc\uffff0\x00"  # NUL, the escape character, and what an escape looks like


@pytest.fixture
async def store(postgres_dsn: str) -> AsyncIterator[PostgresStore]:
    store = PostgresStore(postgres_dsn)
    await store.open()
    yield store
    await store.close()


async def sql(dsn: str, statement: str) -> object:
    """One statement on a connection of the test's own (not the store's)."""
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(statement)
    finally:
        await conn.close()


async def test_text_with_nul_and_the_escape_character_reads_back_as_written(
    store: PostgresStore,
) -> None:
    queued = job(1, Q, key=ODD, step=ODD)
    queued.task = ODD
    await commit(store, inserts=[queued], workflows=[(1, ODD, ODD, 5.0)])
    _, update = moved(queued, F, worker=ODD, error=ODD, token=1)
    attempt = (1, 1, ODD, 1.0, 2.0, "error", ODD)
    await commit(store, updates=[update], attempts=[attempt])
    [got] = await store.jobs([1])
    assert (got.task, got.idempotency_key, got.step, got.worker, got.error) == (ODD,) * 5
    assert await store.ids_by_key([ODD, "a"]) == {ODD: 1}
    assert await store.attempts(1) == [AttemptRecord(1, 1, ODD, 1.0, 2.0, "error", ODD)]
    assert await store.workflow_by_key(ODD) == WorkflowRecord(1, ODD, ODD, 5.0)
    assert [j.id for j in await store.list_jobs(queue=ODD)] == []


async def test_a_big_batch_with_every_job_inserted_leased_and_finished_commits_whole(
    store: PostgresStore,
) -> None:
    jobs = [job(i) for i in range(1, 5001)]
    leases, results = [], []
    for queued in jobs:
        running, lease = moved(queued, R, token=1, worker="w", started_at=2.0)
        _, result = moved(running, S, result=msgspec.Raw(b"\xc0"), finished_at=3.0)
        leases.append(lease)
        results.append(result)
    await store.commit(Ops(inserts=jobs, updates=leases + results))
    recovered = await store.recover()
    assert recovered.counts == {"SUCCEEDED": 5000}
    assert (recovered.max_job_id, recovered.live) == (5000, [])
    # A second update of one job that does not expect what the first set: nothing applies.
    more = [job(i) for i in range(5001, 5101)]
    chain = [moved(j, R, token=1)[1] for j in more]  # each QUEUED -> RUNNING
    chain.append(moved(more[50], S)[1])  # QUEUED -> SUCCEEDED, but it is RUNNING by now
    with pytest.raises(
        StoreInconsistent, match="job 5051: an update expects QUEUED after one that set RUNNING"
    ):
        await store.commit(Ops(inserts=more, updates=chain))
    assert await store.jobs([5001, 5051]) == []


async def test_a_newer_database_is_refused_naming_both_versions_and_left_untouched(
    postgres_dsn: str, store: PostgresStore
) -> None:
    await store.close()
    await sql(postgres_dsn, "UPDATE corral_schema SET version = 99")
    with pytest.raises(
        StoreError, match=rf"newer corral: schema 99, this corral knows up to {CURRENT}"
    ):
        await PostgresStore(postgres_dsn).open()
    assert await sql(postgres_dsn, "SELECT version FROM corral_schema") == 99


async def test_a_new_step_is_applied_once_at_start_up_and_a_failing_one_changes_nothing(
    postgres_dsn: str,
    store: PostgresStore,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await commit(store, inserts=[job(1)])
    await store.close()
    steps = [*postgres_schema.STEPS, "CREATE TABLE broken (x int); SELECT 1/0;"]
    monkeypatch.setattr(postgres_schema, "STEPS", steps)
    with pytest.raises(StoreError, match="division by zero"):
        await PostgresStore(postgres_dsn).open()
    assert await sql(postgres_dsn, "SELECT to_regclass('broken') IS NULL")
    assert await sql(postgres_dsn, "SELECT version FROM corral_schema") == CURRENT

    steps[-1] = "CREATE INDEX jobs_queue ON jobs (queue);"
    caplog.set_level(logging.WARNING, logger="corral.store")
    again = PostgresStore(postgres_dsn)
    await again.open()
    try:
        assert [j.id for j in await again.jobs([1])] == [1]
    finally:
        await again.close()
    assert await sql(postgres_dsn, "SELECT version FROM corral_schema") == CURRENT + 1
    assert [r.getMessage() for r in caplog.records if "upgraded" in r.getMessage()] == [
        f"upgraded {again.where} from schema {CURRENT} to {CURRENT + 1}"
    ]


async def test_a_database_with_another_programs_tables_is_refused(postgres_dsn: str) -> None:
    await sql(postgres_dsn, "CREATE TABLE invoices (id int)")
    with pytest.raises(StoreError, match="tables but no corral schema version"):
        await PostgresStore(postgres_dsn).open()
    assert await sql(postgres_dsn, "SELECT to_regclass('jobs') IS NULL")


async def test_stores_opening_a_new_database_together_build_its_schema_once(
    postgres_dsn: str,
) -> None:
    stores = [PostgresStore(postgres_dsn, name=f"s{i}") for i in range(4)]
    await asyncio.gather(*(store.open() for store in stores))
    try:
        await commit(stores[0], inserts=[job(1)])
        assert [j.id for j in await stores[3].jobs([1])] == [1]
    finally:
        await asyncio.gather(*(store.close() for store in stores))
    assert await sql(postgres_dsn, "SELECT version FROM corral_schema") == CURRENT
    assert await sql(postgres_dsn, "SELECT count(*) FROM corral_leader") == 1


async def test_the_session_commits_synchronously_whatever_the_database_default(
    postgres_dsn: str,
) -> None:
    await sql(postgres_dsn, "SELECT 1")  # the database exists; now make its default weak
    name = postgres_dsn.rsplit("/", 1)[1]
    await sql(postgres_dsn, f'ALTER DATABASE "{name}" SET synchronous_commit = off')
    store = PostgresStore(postgres_dsn)
    await store.open()
    try:
        assert store.conn is not None
        assert await store.conn.fetchval("SHOW synchronous_commit") == "on"
    finally:
        await store.close()


async def test_a_connection_killed_under_the_store_stops_it_with_one_line(
    postgres_dsn: str, store: PostgresStore
) -> None:
    assert store.conn is not None
    pid = store.conn.get_server_pid()
    await sql(postgres_dsn, f"SELECT pg_terminate_backend({pid})")
    with pytest.raises(StoreError, match=r"lost the connection to PostgreSQL at 127\.0\.0\.1:"):
        await commit(store, inserts=[job(1)])
    with pytest.raises(StoreError, match="lost the connection"):
        store.verify()


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda dsn, port: dsn.replace(f":{port}/", ":1/"), "127.0.0.1:1: connection refused"),
        (lambda dsn, port: dsn.replace("corral-test", "not-the"), "refused user corral"),
        (lambda dsn, port: dsn.rsplit("/", 1)[0] + "/nope", "database nope does not exist"),
    ],
    ids=["no server at the port", "wrong password", "no such database"],
)
async def test_a_database_it_cannot_reach_is_one_store_error_naming_the_cause(
    postgres_dsn: str, change: object, words: str
) -> None:
    port = postgres_dsn.rsplit(":", 1)[1].split("/")[0]
    dsn = change(postgres_dsn, port)  # type: ignore[operator]
    store = PostgresStore(dsn)
    with pytest.raises(StoreError) as raised:
        await asyncio.wait_for(store.open(), 30)
    message = str(raised.value)
    assert words in message, message
    assert "\n" not in message
    assert "secret" not in message
    assert store.conn is None


async def test_a_big_read_becomes_jobs_a_chunk_at_a_time_letting_other_tasks_run(
    store: PostgresStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new leader reads its whole backlog on the loop that renews its term: the rows
    come and become jobs a chunk at a time, other tasks running in between. (In one go,
    400,000 of them held the loop past the term: tests/e2e/test_takeover_backlog.py.)"""
    monkeypatch.setattr(postgres, "READ_CHUNK", 100)
    n = 2 * postgres.READ_CHUNK + 1
    await commit(store, inserts=[job(i, Q) for i in range(1, n + 1)])
    seen: list[int] = []
    convert = postgres.job_from_record
    async with Turns() as turns:

        def spy(row: asyncpg.Record) -> object:
            seen.append(turns.count)
            return convert(row)

        monkeypatch.setattr(postgres, "job_from_record", spy)
        recovered = await store.recover()
    assert [j.id for j in recovered.live] == list(range(1, n + 1))
    assert len(seen) == n
    assert len(set(seen)) == 3, "three chunks, the other task ran between each two"


async def test_a_backlog_read_holds_one_chunk_of_rows_at_a_time_and_shares_names(
    store: PostgresStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A restart's or takeover's read of the whole backlog does not hold every row beside
    the jobs made of them (a plain fetch did: 130 MB more at the peak of 300,000 jobs): its
    memory beyond the jobs follows the chunk, not the backlog. And the jobs share one copy
    of each task and queue name, not one per row."""
    jobs = [
        stored_job(i, Q, task="".join(["send", "_mail"]), queue="".join("mail"))
        for i in range(1, 3001)
    ]
    await commit(store, inserts=jobs)

    async def transient(chunk: int) -> int:
        """Bytes allocated beyond what the read keeps, at its peak."""
        monkeypatch.setattr(postgres, "READ_CHUNK", chunk)
        tracemalloc.start()
        try:
            live = (await store.recover()).live
            kept, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert [j.id for j in live] == list(range(1, 3001))
        assert all(j.task == "send_mail" and j.task is live[0].task for j in live)
        assert all(j.queue == "mail" and j.queue is live[0].queue for j in live)
        return peak - kept

    whole, chunked = await transient(3000), await transient(100)
    assert chunked < whole / 2, (chunked, whole)


async def _backlog_read_on_a_link_gone_silent(
    dsn: str, monkeypatch: pytest.MonkeyPatch, cancel: bool
) -> tuple[str, float]:
    """A store recovering 1,000 queued jobs through a proxy that goes silent after the first
    chunk of 100: how the read ends (cancelled 0.5 s later, or left to fail), and how long
    after the cancel or the silence's first half second it took."""
    monkeypatch.setattr(pgconn, "COMMAND_TIMEOUT_S", SILENT_TIMEOUT_S)
    monkeypatch.setattr(postgres, "READ_CHUNK", 100)
    seed = PostgresStore(dsn)
    await seed.open()
    await commit(seed, inserts=[job(i, Q) for i in range(1, 1001)])
    await seed.close()
    with proxy_to(dsn) as proxy:
        store = PostgresStore(proxy.dsn(dsn))
        await store.open()
        convert, seen = postgres.job_from_record, 0

        def silence_after_the_first_chunk(row: asyncpg.Record) -> object:
            nonlocal seen
            seen += 1
            if seen == 100:
                proxy.blackhole()
            return convert(row)

        monkeypatch.setattr(postgres, "job_from_record", silence_after_the_first_chunk)
        reading = asyncio.ensure_future(store.recover())
        await asyncio.sleep(0.5)  # the second chunk is asked for and never comes
        assert not reading.done()
        started = time.monotonic()
        if cancel:
            reading.cancel()
        try:
            await reading
            outcome = "returned"
        except asyncio.CancelledError:
            outcome = "cancelled"
        except StoreError as exc:
            outcome = f"StoreError: {exc}"
        took = time.monotonic() - started
        await store.close()
    return outcome, took


SILENT_TIMEOUT_S = 3.0


async def test_a_backlog_read_cancelled_on_a_silent_link_is_cancelled(
    postgres_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A deposed leader's load is cancelled (node._lead): the cancel must end the read, not
    turn into a StoreError a command timeout later (a ROLLBACK on the silent link waited
    for the server to confirm the unfinished fetch's cancel)."""
    outcome, _ = await _backlog_read_on_a_link_gone_silent(postgres_dsn, monkeypatch, True)
    assert outcome == "cancelled", outcome


async def test_a_backlog_read_on_a_silent_link_fails_within_one_command_timeout(
    postgres_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    outcome, took = await _backlog_read_on_a_link_gone_silent(postgres_dsn, monkeypatch, False)
    assert outcome.startswith("StoreError"), outcome
    assert "did not answer" in outcome, outcome
    # One timeout (3 s), not two (the fetch's, then the ROLLBACK's): about 6 s before.
    assert took < 1.5 * SILENT_TIMEOUT_S, took


async def test_a_status_edited_by_hand_is_refused_at_start_naming_it(postgres_dsn: str) -> None:
    store = PostgresStore(postgres_dsn)
    await store.open()
    try:
        await commit(store, inserts=[job(1, Q), job(2, Q)])
        await sql(postgres_dsn, "UPDATE jobs SET status = 'DONE' WHERE id = 2")
        with pytest.raises(StoreError) as refused:
            await store.recover()
        assert "status 'DONE' (on 1 job(s)) is not a job state" in str(refused.value)
        assert "could not have written" in str(refused.value)
        # A parent of a live job read at start-up is checked as it becomes a job.
        await sql(postgres_dsn, "UPDATE jobs SET status = 'SUCCEEDED' WHERE id = 2")
        await commit(store, inserts=[job(3, Q, depends_on=(2,))])
        assert [j.id for j in (await store.recover()).parents] == [2]
        await sql(postgres_dsn, "UPDATE jobs SET status = 'succeeded' WHERE id = 2")
        with pytest.raises(StoreError, match="status 'succeeded'"):
            await store.recover()
        with pytest.raises(UnreadableRow, match="job 2: status 'succeeded' is not a job state"):
            await store.jobs([2])  # a view's read: the request fails, not the store
    finally:
        await store.close()
