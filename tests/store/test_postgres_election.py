"""Several schedulers, one leader, on a real PostgreSQL server: the election row
(``postgres_leader``) and the fencing of every commit of the leader. Two or three
"schedulers" here are election sessions and stores in one process, on one database: only
one acquires a term; renewing keeps it; after the TTL without renewal another takes the
next term; a deposed leader's commit is refused whole; a commit racing an acquisition is
either wholly before the new term (and the new leader loads it) or refused."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import pytest

from actors.errors import NotLeaderAnymore, StoreError
from actors.scheduler.ops import Ops
from actors.scheduler.store.election import LeaderRecord
from actors.scheduler.store.postgres import PostgresStore
from actors.scheduler.store.postgres_leader import FENCE, PostgresElection
from tests.store.records import R, commit, job, moved

Elect = Callable[..., Awaitable[PostgresElection]]
Open = Callable[..., Awaitable[PostgresStore]]


@pytest.fixture
async def elect(postgres_dsn: str) -> AsyncIterator[Elect]:
    """``await elect(name, ttl=..., address=...)``: an open election session."""
    opened: list[PostgresElection] = []

    async def make(
        name: str, ttl: float = 30.0, address: str = "", **options: float
    ) -> PostgresElection:
        address = address or f"tcp://{name}:5555"
        election = PostgresElection(postgres_dsn, name, address, ttl, **options)
        await election.open()
        opened.append(election)
        return election

    yield make
    for election in opened:
        await election.close()


@pytest.fixture
async def store(postgres_dsn: str) -> AsyncIterator[Open]:
    """``await store(name, term)``: an open store fenced with ``term``."""
    opened: list[PostgresStore] = []

    async def make(name: str, term: int | None) -> PostgresStore:
        backend = PostgresStore(postgres_dsn, name=name, term=term)
        await backend.open()
        opened.append(backend)
        return backend

    yield make
    for backend in opened:
        await backend.close()


async def until_acquired(election: PostgresElection, timeout: float = 15.0) -> int:
    """Poll as a standby does until ``election`` takes a term; that term."""
    deadline = time.monotonic() + timeout
    while (term := await election.acquire()) is None:
        assert time.monotonic() < deadline, "never acquired"
        await asyncio.sleep(0.01)
    return term


async def until_waiting_on_a_lock(dsn: str, application: str) -> None:
    """Until a session called ``application`` waits for a lock (watched from a session of
    the test's own: a transaction sees one snapshot of pg_stat_activity)."""
    conn = await asyncpg.connect(dsn)
    try:
        deadline = time.monotonic() + 15
        while not await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 "
            "AND wait_event_type = 'Lock'",
            application,
        ):
            assert time.monotonic() < deadline, f"{application} never waited on a lock"
            await asyncio.sleep(0.02)
    finally:
        await conn.close()


async def test_of_two_schedulers_starting_together_exactly_one_takes_the_first_term(
    elect: Elect,
) -> None:
    a, b = await elect("a"), await elect("b")
    terms = await asyncio.gather(a.acquire(), b.acquire())
    assert sorted(terms, key=lambda t: t or 0) == [None, 1]
    winner = "tcp://a:5555" if terms[0] == 1 else "tcp://b:5555"
    assert await b.leader() == LeaderRecord(1, winner, True)


async def test_renewing_keeps_the_term_and_nobody_else_takes_it(elect: Elect) -> None:
    a, b = await elect("a", ttl=1.0), await elect("b", ttl=1.0)
    assert await a.acquire() == 1
    until = time.monotonic() + 3 * a.ttl  # three whole TTLs, renewed every TTL/4
    while time.monotonic() < until:
        assert await a.renew(1)
        assert await b.acquire() is None
        await asyncio.sleep(a.ttl / 4)
    assert await b.leader() == LeaderRecord(1, "tcp://a:5555", True)


async def test_after_the_ttl_without_renewal_another_takes_the_next_term(elect: Elect) -> None:
    a, b = await elect("a", ttl=0.5), await elect("b", ttl=0.5)
    assert await a.acquire() == 1
    assert await until_acquired(b) == 2
    assert not await a.renew(1), "a lost term can never be renewed"
    assert await a.acquire() is None
    assert await a.leader() == LeaderRecord(2, "tcp://b:5555", True)


async def test_a_lapsed_term_is_over_even_when_nobody_took_it(elect: Elect, store: Open) -> None:
    a = await elect("a", ttl=0.3)
    assert await a.acquire() == 1
    leader = await store("a", 1)
    deadline = time.monotonic() + 15
    while (await a.leader()).live:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    assert not await a.renew(1)
    with pytest.raises(NotLeaderAnymore, match="led with term 1, but its term expired"):
        await commit(leader, inserts=[job(1)])
    assert await a.acquire() == 2, "a new term, never the old one revived"


async def test_resigning_lets_a_standby_take_over_at_once(elect: Elect) -> None:
    a, b = await elect("a"), await elect("b")
    assert await a.acquire() == 1
    assert await b.acquire() is None
    await a.resign(1)
    assert await b.acquire() == 2
    await a.resign(1)  # no longer its term: changes nothing
    assert await a.leader() == LeaderRecord(2, "tcp://b:5555", True)


async def test_at_start_up_a_scheduler_takes_back_a_term_held_at_its_own_address(
    elect: Elect,
) -> None:
    dead = await elect("dead", address="tcp://here:5555")
    assert await dead.acquire() == 1
    elsewhere = await elect("elsewhere", address="tcp://there:5555")
    assert await elsewhere.acquire(reclaim=True) is None
    restarted = await elect("restarted", address="tcp://here:5555")
    assert await restarted.acquire() is None, "only at start-up"
    assert await restarted.acquire(reclaim=True) == 2
    assert not await dead.renew(1)


async def test_a_deposed_leaders_commit_is_refused_and_commits_nothing(
    elect: Elect, store: Open
) -> None:
    a, b = await elect("a", ttl=0.4), await elect("b")  # b's term outlasts the test
    assert await a.acquire() == 1
    old = await store("a", 1)
    queued = job(1)
    await commit(old, inserts=[queued])
    assert await until_acquired(b) == 2
    new = await store("b", 2)
    _, lease = moved(queued, R, token=1, worker="w")
    with pytest.raises(NotLeaderAnymore, match="led with term 1, but term 2 began"):
        await old.commit(Ops(inserts=[job(2)], updates=[lease]).seal())
    assert old.counters() == {"refused_commits": 1}
    [kept] = await new.jobs([1, 2])
    assert (kept.status, kept.token, kept.worker) == (queued.status, 0, None)
    await commit(new, updates=[lease])  # the new leader commits the very same change
    with pytest.raises(NotLeaderAnymore):
        await commit(old, inserts=[job(3)])  # and the old one never again
    assert [j.id for j in (await new.recover()).live] == [1]


async def test_a_commit_holding_the_row_finishes_before_the_new_term_and_the_new_leader_sees_it(
    elect: Elect, store: Open, postgres_dsn: str
) -> None:
    a = await elect("a", ttl=0.3)
    b = await elect("b", ttl=0.3, row_lock_wait=60.0)  # not ending the commit's session
    assert await a.acquire() == 1
    old = await store("a", 1)
    assert old.conn is not None
    conn = old.conn
    transaction = conn.transaction()
    await transaction.start()
    assert tuple(await conn.fetchrow(FENCE)) == (1, True)  # a commit's first statement
    acquiring = asyncio.ensure_future(until_acquired(b))
    await until_waiting_on_a_lock(postgres_dsn, "corral scheduler b")
    assert not acquiring.done(), "the term expired, but the acquisition waits for the commit"
    await conn.execute("INSERT INTO corral_schedulers VALUES ('mark', 'x', 'x', now())")
    await transaction.commit()
    assert await acquiring == 2
    assert await b.peers(seen_within=3600) != []  # the commit of term 1 is there for term 2


async def test_the_leaders_renewals_never_wait_behind_its_own_commits(
    elect: Elect, store: Open
) -> None:
    """A commit in flight holds the fence's row lock; a renewal of the same term, on the
    election's own session, must not wait for it (it did with FOR SHARE: a long commit on
    a loaded machine made a lone leader miss its renewals and lose its own term)."""
    a = await elect("a", ttl=30.0)
    assert await a.acquire() == 1
    own = await store("a", 1)
    assert own.conn is not None
    transaction = own.conn.transaction()
    await transaction.start()  # a commit that passed its fence, still writing
    try:
        assert tuple(await own.conn.fetchrow(FENCE)) == (1, True)
        assert await asyncio.wait_for(a.renew(1), 5.0), "renewed while the commit runs"
    finally:
        await transaction.rollback()


async def test_a_leader_stuck_in_a_commit_past_its_term_has_its_sessions_ended(
    elect: Elect, store: Open
) -> None:
    a, b = await elect("a", ttl=0.3), await elect("b", ttl=0.3)
    assert await a.acquire() == 1
    old = await store("a", 1)
    assert old.conn is not None
    transaction = old.conn.transaction()
    await transaction.start()  # a commit that passed its fence, then its process stopped
    assert tuple(await old.conn.fetchrow(FENCE)) == (1, True)
    await old.conn.execute("INSERT INTO corral_schedulers VALUES ('never', 'x', 'x', now())")
    assert await until_acquired(b) == 2  # after ROW_LOCK_WAIT_S it ends a's sessions
    # How asyncpg reports a session the server ended depends on whether it has read the
    # server's goodbye yet: one of these three (the store turns each into a StoreError).
    ended = (asyncpg.ConnectionDoesNotExistError, asyncpg.InterfaceError)
    with pytest.raises((*ended, asyncpg.InternalClientError)):
        await transaction.commit()
    assert [p.name for p in await b.peers(seen_within=3600)] == []


async def test_commits_racing_an_acquisition_are_each_before_the_new_term_or_refused(
    elect: Elect, store: Open
) -> None:
    a, b = await elect("a", ttl=0.5), await elect("b", ttl=0.5)
    assert await a.acquire() == 1
    old = await store("a", 1)
    committed: list[int] = []
    refused: list[int] = []

    async def keep_committing() -> None:
        # 200-job batches, back to back, never renewing: the term lapses under them.
        for batch in range(1, 10_000):
            jobs = [job(batch * 1000 + i) for i in range(200)]
            try:
                await old.commit(Ops(inserts=jobs).seal())
            except StoreError:  # refused by the fence, or its session ended by the new leader
                refused.append(batch)
                return
            committed.append(batch)

    writer = asyncio.ensure_future(keep_committing())
    assert await until_acquired(b) == 2
    await writer
    new = await store("b", 2)
    recovered = await new.recover()
    loaded = {j.id // 1000 for j in recovered.live}
    assert loaded == set(committed), "every commit that returned is in the new term's state"
    assert refused, "the writer never noticed it lost its term"
    assert refused[0] not in loaded, "the refused one left nothing"
    assert len(recovered.live) == 200 * len(committed)


async def test_every_scheduler_is_listed_with_its_role_while_it_beats(elect: Elect) -> None:
    a, b, c = await elect("a"), await elect("b"), await elect("c")
    await a.beat("leader")
    await b.beat("standby")
    await c.beat("standby")
    await c.leave()
    assert [(p.address, p.role) for p in await b.peers(5.0)] == [
        ("tcp://a:5555", "leader"),
        ("tcp://b:5555", "standby"),
    ]


async def test_a_scheduler_leaving_resigns_a_term_it_took_but_never_served(elect: Elect) -> None:
    """A standby stopped (SIGTERM) just as its acquisition answers: the term crosses to the
    serving loop too late to be led, and leaving at exit resigns it, so the next standby
    does not wait out its TTL. Leaving resigns only a term still its own."""
    a, b = await elect("a", ttl=30.0), await elect("b", ttl=30.0)
    assert await a.acquire() == 1
    await a.leave()
    assert await b.leader() == LeaderRecord(1, "tcp://a:5555", False)
    assert await b.acquire() == 2
    await a.leave()  # term 1 again: b's term 2 is untouched
    assert await a.leader() == LeaderRecord(2, "tcp://b:5555", True)


async def test_a_session_that_failed_mid_statement_is_replaced_not_reused(
    elect: Elect, monkeypatch: pytest.MonkeyPatch
) -> None:
    """asyncpg left mid-statement (a client-side failure, not the server's answer) refuses
    every later statement on that connection ("another operation is in progress"): the
    election replaces the session, so the next renewal goes through."""
    a = await elect("a", ttl=30.0)
    assert await a.acquire() == 1
    broken = a._conn
    assert broken is not None

    execute = asyncpg.Connection.execute

    async def stuck_on_broken(conn: asyncpg.Connection, *args: Any, **kwargs: Any) -> Any:
        if conn is broken:
            raise asyncpg.InternalClientError(
                "cannot switch to state 12; another operation (2) is in progress"
            )
        return await execute(conn, *args, **kwargs)

    monkeypatch.setattr(asyncpg.Connection, "execute", stuck_on_broken)
    with pytest.raises(StoreError, match="another operation"):
        await a.renew(1)
    assert broken.is_closed()
    assert await a.renew(1), "renewed on a new session"
    assert a._conn is not broken


async def test_a_resign_while_a_renewal_is_in_flight_waits_for_it_and_resigns(
    elect: Elect, postgres_dsn: str
) -> None:
    """A leader stopped (SIGTERM) while its renewal is on the election's session: the
    resign must follow that statement on the session, not fail beside it ("another
    operation is in progress"), which left the term to lapse by itself under load."""
    a = await elect("a", ttl=30.0, row_lock_wait=10.0)
    assert await a.acquire() == 1
    blocker = await asyncpg.connect(postgres_dsn)
    try:
        transaction = blocker.transaction()
        await transaction.start()
        await blocker.execute("SELECT 1 FROM corral_leader WHERE id = 1 FOR UPDATE")
        renewing = asyncio.ensure_future(a.renew(1))
        await until_waiting_on_a_lock(postgres_dsn, "corral scheduler a")  # renewal on the session
        resigning = asyncio.ensure_future(a.resign(1))
        await asyncio.sleep(0)  # the resign has reached the session too
        await transaction.rollback()
        assert await asyncio.wait_for(renewing, 10.0)
        await asyncio.wait_for(resigning, 10.0)  # raised StoreError before the fix
    finally:
        await blocker.close()
    assert await a.leader() == LeaderRecord(1, "tcp://a:5555", False), "resigned"
