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
import itertools
import re
import subprocess
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import asyncpg
import pytest

from actors.client import AsyncClient, job_spec
from actors.errors import WaitTimeout
from tests.e2e.test_standby_schedulers import output, until_said
from tests.helpers.cluster import LEDGER_TASKS
from tests.helpers.leaders import hello, until_leading, until_standby_names
from tests.helpers.ledger_tasks import read_ledger
from tests.helpers.procs import Procs, free_address
from tests.helpers.tcp_proxy import TcpProxy, proxy_to
from transport import connect
from transport import protocol as wire

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("leaders")]  # see ./dev test

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
    # The loops end on this, not only on a cancellation: the probe's hello waits with
    # asyncio.wait_for, which on Python 3.11 may swallow one.
    stopped: bool = False


async def _probe(address: str, watch: Watch) -> None:
    while not watch.stopped:
        sent = time.time()
        watch.probes.append((sent, await hello(address, timeout=0.5)))
        await asyncio.sleep(0.02)


async def _rows(dsn: str, watch: Watch) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        while not watch.stopped:
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
        watch.stopped = True
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


@contextlib.asynccontextmanager
async def proxied(dsn: str) -> AsyncIterator[TcpProxy]:
    """A proxy to the database's server, for a test body bounded within the test's
    timeout (so a hang fails with the traceback of where it hung)."""
    with proxy_to(dsn) as proxy:
        async with asyncio.timeout(100):
            yield proxy


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


async def submit_until_flowing(address: str, n: int, seconds: float, flowing: int) -> list[int]:
    """``n`` jobs submitted to A (in commits of a few hundred, as a busy scheduler's
    are), once ``flowing`` of them succeeded."""
    ids: list[int] = []
    async with AsyncClient(address, connect_timeout=10) as client:
        for start in range(0, n, 300):
            specs = [job_spec("token", [seconds]) for _ in range(start, min(n, start + 300))]
            ids += await client.submit_many(specs)
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


async def each_ran_once(procs: Procs, b: str, ids: list[int]) -> None:
    """Every job ends SUCCEEDED on B (what is left after a while, and why, if not), with
    the result of its one execution that ran to its end (the ledger), which no other
    execution of it overlapped. The one excuse for another execution: a worker stopped
    it itself because its lease had lapsed (a starved worker, 1 s leases here), as its
    log says; its result was never reported."""
    async with AsyncClient(b, connect_timeout=10) as client:
        try:
            outcomes = await client.wait(ids, timeout=45)
        except WaitTimeout as exc:
            views = [await client.job(job_id) for job_id in exc.job_ids[:5]]
            raise AssertionError(f"{exc}: {views}\n{procs.log_text()}") from None
    assert {o.status for o in outcomes.values()} == {"SUCCEEDED"}
    fenced = self_fenced(procs)
    ran = read_ledger(str(procs.ledger))
    assert {r["job"] for r in ran} == set(ids), "nothing else ran"
    counted = [r for r in ran if (r["job"], r["token"]) not in fenced]
    assert all(r["end"] is not None for r in counted), "an execution never ended"
    runs = Counter(r["job"] for r in counted)
    again = [j for j, n in runs.items() if n != 1]
    shown = [
        (r["job"], r["token"], r["worker"], r["start"], r["end"])
        for r in ran
        if r["job"] in again[:3]
    ]
    assert runs == Counter(ids), f"{len(again)} job(s) ran again, e.g. {shown}"
    for run in counted:
        assert wire.unpack(outcomes[run["job"]].result) == run["token"], run
    print(f"{len(fenced)} execution(s) stopped by their worker's own lease clock")
    by_job: dict[int, list[tuple[float, float]]] = {}
    for r in ran:
        by_job.setdefault(r["job"], []).append((r["start"], r["end"] or r["start"]))
    for job, spans in by_job.items():
        spans.sort()
        assert all(x[1] <= y[0] for x, y in itertools.pairwise(spans)), (job, spans)


# How a worker logs a handler it stopped because the handler's lease lapsed.
FENCED_LINE = re.compile(
    r"failed: job (\d+), attempt \d+, token (\d+)[^:]*: "
    r"(?:self-fenced|its process stopped itself: the job's lease lapsed)"
)


def self_fenced(procs: Procs) -> set[tuple[int, int]]:
    """(job, token) of every execution a worker stopped itself, its lease lapsed."""
    found: set[tuple[int, int]] = set()
    for log in procs.logs.glob("w*.log"):
        for match in FENCED_LINE.finditer(log.read_text(errors="replace")):
            found.add((int(match[1]), int(match[2])))
    return found


def refusals(replies: list[wire.FromScheduler]) -> set[tuple[int, str, int]]:
    """(request id, leader named, term) of every NotLeader among ``replies``."""
    return {(r.request_id, r.leader, r.term) for r in replies if isinstance(r, wire.NotLeader)}


async def stands_by_naming_b(procs: Procs, leader: subprocess.Popen[bytes], a: str, b: str) -> None:
    """A, its link back, stands by naming B, and commits nothing of what it is sent."""
    named = await until_standby_names(a, b, timeout=30)
    assert refusals([named]) == {(0, b, 2)}, named
    ghost = connect(a)
    try:
        ghost.send(wire.encode(wire.ClientHello(wire.PROTOCOL_VERSION)))
        ghost.send(wire.encode(wire.Submit(1, [job_spec("record", ["ghost"])])))
        ghost.send(wire.encode(wire.GetStatus(99)))
        replies: list[wire.FromScheduler] = []
        while (99, b, 2) not in refusals(replies):
            frames = await asyncio.wait_for(ghost.recv_batch(), 15)
            replies += [wire.decode_reply(frame) for frame in frames]
    finally:
        await ghost.close()
    assert (1, b, 2) in refusals(replies), replies
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
    async with proxied(postgres_dsn) as proxy:
        a, b, leader, _ = await start(procs, postgres_dsn, proxy)
        both = f"{a},{b}"
        workers(procs, both)
        ids = await submit_until_flowing(a, 600, 0.03, flowing=100)
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
        await each_ran_once(procs, b, ids)
        proxy.resume()
        await stands_by_naming_b(procs, leader, a, b)
        await no_ghost(postgres_dsn, len(ids))


async def test_a_leader_blackholed_in_the_middle_of_a_commit_is_replaced_within_its_term_and_5_s(
    procs: Procs, postgres_dsn: str
) -> None:
    """Cut off while it commits back to back: its server session, alive behind the
    blackhole, holds the leader row's share lock in an open transaction; B ends it."""
    async with proxied(postgres_dsn) as proxy:
        a, b, leader, standby = await start(procs, postgres_dsn, proxy)
        both = f"{a},{b}"
        workers(procs, both, slots=8)
        ids = await submit_until_flowing(a, 3000, 0.0, flowing=300)
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
        await each_ran_once(procs, b, ids)
        proxy.resume()
        await until_said(procs, leader, "stepped down from term 1")
        await stands_by_naming_b(procs, leader, a, b)
        await no_ghost(postgres_dsn, len(ids))


# A's commit transactions that hold the leader row FOR SHARE (the fence) and wait for the
# rest of the commit from A, which the blackhole holds: stuck until the session ends.
FENCED = """
SELECT count(*) FROM pg_locks l JOIN pg_stat_activity s ON s.pid = l.pid
WHERE l.relation = 'corral_leader'::regclass AND l.mode = 'RowShareLock'
  AND s.state = 'idle in transaction' AND s.application_name LIKE 'corral scheduler %'
  AND s.datname = current_database()
"""


# The same, for a commit that has waited at least STUCK_S for the rest of it: a commit whose
# next statements had passed the proxy before the blackhole is only between two of them,
# for as long as a loaded server takes to reach them (it then ends, and B finds no session
# of A's to end: one CI run failed so). A's commits send their statements back to back.
STUCK_S = 0.5
STUCK = FENCED + f"  AND s.state_change < clock_timestamp() - interval '{STUCK_S} seconds'"


async def blackhole_in_a_commit(proxy: TcpProxy, conn: asyncpg.Connection) -> float:
    """Blackhole the proxy at a moment A's store session is inside a commit (holds the
    fence's share lock; it keeps it: the rest of the commit never arrives); the wall time
    of that blackhole. Tries again, forwarding in between, until it catches one: a commit
    open 50 ms after the blackhole that is still waiting STUCK_S later (one that ends
    meanwhile was not caught: forwarding resumes at once)."""
    for _ in range(200):
        proxy.blackhole()
        cut_at = time.time()
        await asyncio.sleep(0.05)
        deadline = time.monotonic() + 2 * STUCK_S
        while await conn.fetchval(FENCED) and time.monotonic() < deadline:
            if await conn.fetchval(STUCK):
                return cut_at
            await asyncio.sleep(0.05)
        proxy.resume()  # between two commits: A's renewals were held up a moment, no more
        await asyncio.sleep(0.1)
    raise AssertionError("never caught A inside a commit")


async def test_a_leader_whose_database_connections_are_reset_and_refused_steps_down_and_b_leads(
    procs: Procs, postgres_dsn: str
) -> None:
    """The loud cut: every connection reset, new ones refused. A learns of it at once,
    cannot resign, and stands by; B takes the term when it lapses."""
    async with proxied(postgres_dsn) as proxy:
        a, b, leader, _ = await start(procs, postgres_dsn, proxy)
        both = f"{a},{b}"
        workers(procs, both)
        ids = await submit_until_flowing(a, 400, 0.03, flowing=100)
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
        await each_ran_once(procs, b, ids)
        proxy.resume()
        await stands_by_naming_b(procs, leader, a, b)
        await no_ghost(postgres_dsn, len(ids))
