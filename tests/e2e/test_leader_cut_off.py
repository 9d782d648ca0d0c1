"""A leader cut off from the database, for real (issue 15): scheduler A leads and reaches
PostgreSQL only through a TCP proxy in the test (``tests/helpers/tcp_proxy.py``), standby
B directly; workers run ledger tasks and know both addresses. The proxy then goes silent
(a blackhole: connections stay open, nothing passes either way, A sees no error), or
resets every connection and refuses new ones.

What must hold: A stops leading within its term, by its own clock (no hello sent to it
after the database's expiry of its term is welcomed, and no job starts between that
expiry and B's acquisition of the next term); B leads within the TTL + 5 s of the cut;
every job succeeds exactly once by the ledger; and when the link comes back, A finds its
term gone, commits nothing and stands by naming B, still running. Also when A is cut off
in the middle of a commit, holding the leader row's share lock on a server session that
stays alive behind the blackhole: B ends that session and takes over all the same.

Run with -s to see the measured times."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import asyncpg
import pytest

from actors.client import AsyncClient, job_spec
from tests.e2e.test_standby_schedulers import output, until_said
from tests.helpers.cluster import LEDGER_TASKS
from tests.helpers.leaders import hello, until_leading, until_standby_names
from tests.helpers.ledger_tasks import completed, read_ledger
from tests.helpers.procs import Procs, free_address
from tests.helpers.tcp_proxy import TcpProxy, proxy_to
from transport import connect
from transport import protocol as wire

pytestmark = pytest.mark.slow

TTL_S = 2.0  # --leader-ttl's default, which these schedulers run with
# The bound for a leader cut off from the database: the standby leads within
# its term + 5 s of the cut.
CUT_OFF_BOUND_S = TTL_S + 5.0


@dataclass
class Watch:
    """What the test saw while A was cut off: every hello sent to A (wall time sent, the
    reply), and the leader row's terms with their expiry (wall times, the database's)."""

    probes: list[tuple[float, wire.Welcome | wire.NotLeader | None]] = field(default_factory=list)
    expiry: dict[int, float] = field(default_factory=dict)  # term -> last expires_at seen
    acquired: dict[int, float] = field(default_factory=dict)  # term -> when it began


async def _probe(address: str, watch: Watch) -> None:
    while True:
        sent = time.time()
        watch.probes.append((sent, await hello(address, timeout=0.5)))
        await asyncio.sleep(0.02)


async def _rows(dsn: str, watch: Watch) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        while True:
            term, expires, ttl = await conn.fetchrow(
                "SELECT term, extract(epoch FROM expires_at)::float8, "
                "extract(epoch FROM expires_at - clock_timestamp())::float8 FROM corral_leader"
            )
            if term not in watch.acquired and ttl > 0:
                # Seen before its first renewal (a quarter TTL later): when it was taken.
                watch.acquired[term] = expires - TTL_S
            watch.expiry[term] = expires
            await asyncio.sleep(0.01)
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def watching(address: str, dsn: str) -> AsyncIterator[Watch]:
    watch = Watch()
    tasks = [
        asyncio.ensure_future(_probe(address, watch)),
        asyncio.ensure_future(_rows(dsn, watch)),
    ]
    try:
        yield watch
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def workers(procs: Procs, addresses: str, n: int = 2, slots: int = 4) -> None:
    for i in range(n):
        name = f"w{i}"
        procs.spawn(
            name, "worker", LEDGER_TASKS, "--connect", addresses, "--concurrency", str(slots),
            "--name", name,
        )  # fmt: skip


Scheduler = subprocess.Popen[bytes]


async def start(procs: Procs, dsn: str, proxy: TcpProxy) -> tuple[str, str, Scheduler, Scheduler]:
    """A leading through the proxy, B standing by directly."""
    a, b = free_address(), free_address()
    leader = procs.scheduler(a, proxy.dsn(dsn))
    await until_leading([a])
    standby = procs.scheduler(b, dsn)
    await until_standby_names(b, a)
    assert proxy.accepted >= 2, "A's sessions go through the proxy"
    return a, b, leader, standby


async def submit_until_flowing(addresses: str, n: int, seconds: float, flowing: int) -> list[int]:
    async with AsyncClient(addresses, connect_timeout=10) as client:
        ids = await client.submit_many([job_spec("token", [seconds]) for _ in range(n)])
        while (await client.status()).jobs.get("SUCCEEDED", 0) < flowing:  # noqa: ASYNC110
            await asyncio.sleep(0.01)  # polling the scheduler is the point here
    return ids


def check_stopped_within_term(
    watch: Watch, ledger: str, a: str, cut_at: float, silent: bool = True
) -> None:
    """A welcomed no hello sent after its term expired (by the database's clock), never
    named itself the leader once it stood by, and no job started between that expiry and
    B taking term 2. ``silent``: the cut was a blackhole, so A led on until its clock
    said stop (a reset tells it at once)."""
    expired, taken = watch.expiry[1], watch.acquired[2]
    assert taken >= expired
    welcomed = [sent for sent, reply in watch.probes if isinstance(reply, wire.Welcome)]
    assert welcomed or not silent, "A led on when the cut came"
    late = [round(sent - expired, 3) for sent in welcomed if sent >= expired]
    assert not late, f"A welcomed hellos sent {late} s after its term expired"
    assert [sent for sent, _ in watch.probes if sent >= expired], "A was probed after that"
    named = {r.leader for _, r in watch.probes if isinstance(r, wire.NotLeader)}
    assert a not in named, "a scheduler that stepped down named itself the leader"
    starts = [r["start"] for r in read_ledger(ledger)]
    between = [s - expired for s in starts if expired <= s < taken]
    assert not between, f"jobs started {between} s after A's term expired, before B led"
    last_by_a = max((s for s in starts if s < taken), default=cut_at)
    print(
        f"A's term expired {expired - cut_at:.2f} s after the cut (the database's clock); "
        f"A's last welcome was to a hello sent {max(welcomed, default=cut_at) - cut_at:.2f} "
        f"s after it, the last job started before B led {last_by_a - cut_at:.2f} s after "
        f"it; B took term 2 {taken - cut_at:.2f} s after it"
    )


def exactly_once(ledger: str, ids: list[int]) -> None:
    """Every job ran to its end once, and nothing else ran."""
    runs = Counter(r["job"] for r in read_ledger(ledger))
    assert runs == Counter(ids), {j: n for j, n in runs.items() if n != 1}
    assert len(completed(ledger)) == len(ids)


async def stands_by_naming_b(procs: Procs, leader: subprocess.Popen[bytes], a: str, b: str) -> None:
    """A, its link back, stands by naming B, and commits nothing of what it is sent."""
    assert await until_standby_names(a, b, timeout=30) == wire.NotLeader(0, b, 2)
    ghost = connect(a)
    try:
        ghost.send(wire.encode(wire.ClientHello(wire.PROTOCOL_VERSION)))
        ghost.send(wire.encode(wire.Submit(1, [job_spec("record", ["ghost"])])))
        ghost.send(wire.encode(wire.GetStatus(99)))
        replies: list[wire.FromScheduler] = []
        while wire.NotLeader(99, b, 2) not in replies:
            frames = await asyncio.wait_for(ghost.recv_batch(), 15)
            replies += [wire.decode_reply(frame) for frame in frames]
    finally:
        await ghost.close()
    assert wire.NotLeader(1, b, 2) in replies, replies
    assert leader.poll() is None, f"A stands by, it did not exit:\n{output(procs, leader)}"


async def no_ghost(dsn: str, count: int) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        assert await conn.fetchval("SELECT count(*) FROM jobs") == count, "A committed nothing"
        assert await conn.fetchval("SELECT term FROM corral_leader") == 2
    finally:
        await conn.close()


async def test_a_leader_blackholed_from_the_database_stops_within_its_term_and_b_takes_over(
    procs: Procs, postgres_dsn: str
) -> None:
    with proxy_to(postgres_dsn) as proxy:
        a, b, leader, _ = await start(procs, postgres_dsn, proxy)
        both = f"{a},{b}"
        workers(procs, both)
        ids = await submit_until_flowing(both, 600, 0.03, flowing=100)
        async with watching(a, postgres_dsn) as watch:
            proxy.blackhole()
            cut_at = time.time()
            _, term, _ = await until_leading([b], above=1)
            led_after = time.time() - cut_at
            line = await until_said(procs, leader, "stepped down from term 1")
            await asyncio.sleep(0.5)  # the probes see A refusing for a while
        print(f"B led {led_after:.2f} s after A was blackholed; A said: {line}")
        assert term == 2
        assert led_after < CUT_OFF_BOUND_S
        assert "lapsed by this scheduler's own clock" in line, line
        check_stopped_within_term(watch, str(procs.ledger), a, cut_at)
        async with AsyncClient(b, connect_timeout=10) as client:
            outcomes = await client.wait(ids, timeout=120)
        assert {o.status for o in outcomes.values()} == {"SUCCEEDED"}
        exactly_once(str(procs.ledger), ids)
        proxy.resume()
        await stands_by_naming_b(procs, leader, a, b)
        await no_ghost(postgres_dsn, len(ids))


async def test_a_leader_blackholed_in_the_middle_of_a_commit_is_replaced_within_its_term_and_5_s(
    procs: Procs, postgres_dsn: str
) -> None:
    """Cut off while it commits back to back: its server session, alive behind the
    blackhole, holds the leader row's share lock in an open transaction; B ends it."""
    with proxy_to(postgres_dsn) as proxy:
        a, b, leader, standby = await start(procs, postgres_dsn, proxy)
        both = f"{a},{b}"
        workers(procs, both, slots=8)
        ids = await submit_until_flowing(both, 3000, 0.0, flowing=300)
        conn = await asyncpg.connect(postgres_dsn)
        try:
            cut_at = await blackhole_in_a_commit(proxy, conn)
        finally:
            await conn.close()
        _, term, _ = await until_leading([b], above=1)
        led_after = time.time() - cut_at
        ended = await until_said(procs, standby, "held the leader row in an unfinished")
        print(f"B led {led_after:.2f} s after A was blackholed mid-commit; B said: {ended}")
        assert term == 2
        assert led_after < CUT_OFF_BOUND_S
        async with AsyncClient(b, connect_timeout=10) as client:
            outcomes = await client.wait(ids, timeout=120)
        assert {o.status for o in outcomes.values()} == {"SUCCEEDED"}
        exactly_once(str(procs.ledger), ids)
        proxy.resume()
        await until_said(procs, leader, "stepped down from term 1")
        await stands_by_naming_b(procs, leader, a, b)
        await no_ghost(postgres_dsn, len(ids))


# A's commit transactions that hold the leader row FOR SHARE (the fence) right now.
FENCED = """
SELECT count(*) FROM pg_locks l JOIN pg_stat_activity s ON s.pid = l.pid
WHERE l.relation = 'corral_leader'::regclass AND l.mode = 'RowShareLock'
  AND s.application_name LIKE 'corral scheduler %' AND s.datname = current_database()
"""


async def blackhole_in_a_commit(proxy: TcpProxy, conn: asyncpg.Connection) -> float:
    """Blackhole the proxy at a moment A's store session is inside a commit (holds the
    fence's share lock; it keeps it: the rest of the commit never arrives); the wall time
    of that blackhole. Tries again, forwarding in between, until it catches one."""
    for _ in range(200):
        proxy.blackhole()
        cut_at = time.time()
        await asyncio.sleep(0.05)  # what passed before the blackhole has been executed
        if await conn.fetchval(FENCED):
            return cut_at
        proxy.resume()  # between two commits: A's renewals were held up 50 ms, no more
        await asyncio.sleep(0.1)
    raise AssertionError("never caught A inside a commit")


async def test_a_leader_whose_database_connections_are_reset_and_refused_steps_down_and_b_leads(
    procs: Procs, postgres_dsn: str
) -> None:
    """The loud cut: every connection reset, new ones refused. A learns of it at once,
    cannot resign, and stands by; B takes the term when it lapses."""
    with proxy_to(postgres_dsn) as proxy:
        a, b, leader, _ = await start(procs, postgres_dsn, proxy)
        both = f"{a},{b}"
        workers(procs, both)
        ids = await submit_until_flowing(both, 400, 0.03, flowing=100)
        async with watching(a, postgres_dsn) as watch:
            reset = proxy.cut(refuse=True)
            cut_at = time.time()
            _, term, _ = await until_leading([b], above=1)
            led_after = time.time() - cut_at
            line = await until_said(procs, leader, "stepped down from term 1")
            await asyncio.sleep(0.5)
        print(f"B led {led_after:.2f} s after A's {reset} connections were reset; A: {line}")
        assert term == 2
        assert led_after < CUT_OFF_BOUND_S
        assert "lost the connection to PostgreSQL" in line, line
        check_stopped_within_term(watch, str(procs.ledger), a, cut_at, silent=False)
        async with AsyncClient(b, connect_timeout=10) as client:
            outcomes = await client.wait(ids, timeout=120)
        assert {o.status for o in outcomes.values()} == {"SUCCEEDED"}
        exactly_once(str(procs.ledger), ids)
        proxy.resume()
        await stands_by_naming_b(procs, leader, a, b)
        await no_ghost(postgres_dsn, len(ids))
