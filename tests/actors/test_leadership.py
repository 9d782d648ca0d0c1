"""The election loops (``actors.scheduler.leadership``) against a scripted election and a
fake clock, and the standby's edge (``actors.scheduler.standby``) on the in-memory
transport: when a leader gives up its term by its own clock, what it says when the term
was taken, how a standby campaigns through a database outage, what a standby answers.
(The same on a real PostgreSQL and real processes: tests/store/test_postgres_election.py,
tests/e2e/test_standby_schedulers.py.)"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

import pytest

from actors.errors import StoreError
from actors.scheduler.leadership import (
    POLL_S,
    STEP_DOWN_EARLY,
    Leadership,
    Term,
    stall_limit,
)
from actors.scheduler.standby import Standby
from actors.scheduler.store.election import LeaderRecord, PeerRecord
from transport import bind, connect
from transport import protocol as wire

TTL = 2.0


class Clock:
    """Fake monotonic time; ``sleep`` advances it and yields once."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)


class Scripted:
    """An election whose answers the test scripts: ``renewals`` (True, False, or an
    exception, one per call; then ``then``), ``acquisitions`` likewise."""

    where = "database scripted"

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.renewals: list[bool | Exception] = []
        self.then: bool | Exception = True
        self.renew_takes = 0.0
        self.acquisitions: list[int | Exception | None] = []
        self.row = LeaderRecord(1, "tcp://a:1", True)
        self.sent: list[float] = []  # when each renewal was sent
        self.beats: list[str] = []
        self.resigned: list[int] = []

    async def acquire(self, *, reclaim: bool = False) -> int | None:
        outcome = self.acquisitions.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    async def renew(self, term: int) -> bool:
        self.sent.append(self.clock.now)
        outcome = self.renewals.pop(0) if self.renewals else self.then
        await self.clock.sleep(self.renew_takes)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    async def resign(self, term: int) -> None:
        self.resigned.append(term)

    async def leader(self) -> LeaderRecord:
        return self.row

    async def beat(self, role: str) -> None:
        self.beats.append(role)

    async def peers(self, seen_within: float) -> list[PeerRecord]:
        return [
            PeerRecord("me", "tcp://me:1", "leader", 0.0),
            PeerRecord("b", "tcp://b:1", "standby", 0.4),
        ]

    async def leave(self) -> None: ...

    async def close(self) -> None: ...


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def election(clock: Clock) -> Scripted:
    return Scripted(clock)


@pytest.fixture
def leadership(election: Scripted, clock: Clock) -> Leadership:
    return Leadership(election, TTL, "tcp://me:1", clock=clock, sleep=clock.sleep)


def down() -> StoreError:
    return StoreError("database scripted", "lost the connection to PostgreSQL")


async def test_a_leader_that_cannot_renew_gives_up_its_term_when_its_own_clock_says_it_lapsed(
    leadership: Leadership, election: Scripted, clock: Clock
) -> None:
    election.then = down()
    lost = await leadership.hold(Term(1, since=0.0))
    assert "term 1 lapsed by this scheduler's own clock" in str(lost)
    assert lost.term == 1
    # An eighth of the TTL before the term's end (a busy loop is late by a few turns), not
    # a renewal later.
    assert clock.now == pytest.approx(TTL * (1 - STEP_DOWN_EARLY))
    assert election.sent == pytest.approx([0.5, 1.0, 1.5]), "a try every quarter of the TTL"


async def test_a_leader_cut_off_from_the_database_stands_by_naming_no_leader_not_itself(
    leadership: Leadership, election: Scripted, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    election.then = TimeoutError()  # what a renewal on a silent link ends with
    election.acquisitions = [None, 2]
    assert await leadership.attempt() is None  # the row says another leads (term 1)
    assert await leadership.attempt() == Term(2, since=clock.now)
    lost = await leadership.hold(Term(2, since=clock.now))
    assert "term 2 lapsed by this scheduler's own clock" in str(lost)
    # Its last reading of the row is its own term: as a standby it names no leader until
    # it reads the row again, never itself (workers asking it try the next address).
    assert leadership.known_leader() == ("", 2)
    assert "could not renew term 2: no answer" in caplog.text


async def test_a_leader_whose_serving_loop_stopped_running_resigns_its_term_unrenewed(
    election: Scripted, clock: Clock
) -> None:
    """The renewals run on the election's own thread (``election_thread``): they would keep
    the term for a scheduler stuck in one step, serving nobody, without this."""
    limit = stall_limit(lease=5.0, ttl=TTL)
    assert limit == pytest.approx(5.0 - TTL - POLL_S), "a standby serves within the lease"

    def serving_idle() -> float:  # the serving loop stops running after 3 renewals
        return limit if len(election.sent) >= 3 else 0.0

    leadership = Leadership(
        election,
        TTL,
        "tcp://me:1",
        clock=clock,
        sleep=clock.sleep,
        serving_idle=serving_idle,
        stall_limit=limit,
    )
    lost = await asyncio.wait_for(leadership.hold(Term(1, since=0.0)), 10)
    assert "event loop has not run for 2.8 s: term 1 resigned" in str(lost)
    assert len(election.sent) == 3, "no renewal once the serving loop stalled"
    assert election.resigned == [1], "resigned from the election's thread"
    # Nor does a standby whose loop is stuck try for a term it could not serve.
    election.acquisitions = [2]
    assert await leadership.attempt() is None
    assert election.acquisitions == [2], "tried to acquire"


def test_the_stall_limit_is_never_shorter_than_the_term() -> None:
    assert stall_limit(lease=2.0, ttl=TTL) == TTL


async def test_the_term_is_counted_from_before_the_last_good_renewal_was_sent(
    leadership: Leadership, election: Scripted, clock: Clock
) -> None:
    election.renew_takes = 0.25
    election.renewals = [True, True]
    election.then = down()
    lost = await leadership.hold(Term(1, since=0.0))
    assert "lapsed" in str(lost)
    # Renewals sent at 0.5 and 1.25 succeeded (each answered 0.25 s later): the term is
    # held until 1.25 + its TTL, and the leader stands down an eighth of it before.
    assert election.sent[:2] == pytest.approx([0.5, 1.25])
    assert clock.now == pytest.approx(1.25 + TTL * (1 - STEP_DOWN_EARLY))


async def test_a_leader_told_to_stop_holding_stops_even_as_a_renewal_answers(
    leadership: Leadership, election: Scripted
) -> None:
    """The node cancels ``hold`` when its term ends; a renewal answering at that very
    moment must not swallow the cancellation (Python 3.11's ``asyncio.wait_for`` does),
    or ``hold`` would renew a term nobody serves, forever, while the node waits for it."""
    answers: list[asyncio.Future[bool]] = []
    asked = asyncio.Event()

    async def renew(term: int) -> bool:
        answers.append(asyncio.get_running_loop().create_future())
        asked.set()
        return await answers[-1]

    election.renew = renew  # type: ignore[method-assign]
    holding = asyncio.ensure_future(leadership.hold(Term(1, since=0.0)))
    await asked.wait()
    answers[0].set_result(True)
    holding.cancel()  # in the same turn: the renewal's answer and the cancellation race
    done, _ = await asyncio.wait({holding}, timeout=2)
    assert holding in done, "hold went on renewing after it was cancelled"
    assert holding.cancelled()


async def test_a_renewal_that_finds_the_term_taken_ends_it_at_once_naming_the_taker(
    leadership: Leadership, election: Scripted, clock: Clock
) -> None:
    election.renewals = [True, False]
    election.row = LeaderRecord(2, "tcp://b:1", True)
    lost = await leadership.hold(Term(1, since=0.0))
    assert str(lost) == "term 2 was taken by tcp://b:1"
    assert clock.now == pytest.approx(1.0)


async def test_while_it_renews_the_leader_lists_the_schedulers_for_the_status(
    leadership: Leadership, election: Scripted
) -> None:
    election.renewals = [True, True, False]
    await leadership.hold(Term(3, since=0.0))
    assert election.beats == ["leader"]  # once a second, not at every renewal
    assert leadership.cluster() == wire.ClusterView(
        "tcp://me:1",
        3,
        [
            wire.SchedulerView("tcp://me:1", "leader", 0.0),
            wire.SchedulerView("tcp://b:1", "standby", 0.4),
        ],
    )


async def test_a_standby_campaigns_through_an_outage_and_knows_the_leader_meanwhile(
    leadership: Leadership, election: Scripted, clock: Clock
) -> None:
    assert leadership.known_leader() == ("", 0)
    election.acquisitions = [None, down(), down(), None, 5]
    seen: list[tuple[str, int]] = []
    real_sleep = leadership.sleep

    async def watch(seconds: float) -> None:
        seen.append(leadership.known_leader())
        await real_sleep(seconds)

    leadership.sleep = watch
    told: list[tuple[str, int]] = []
    term = await leadership.campaign(told.append)
    assert term == Term(5, since=pytest.approx(4 * POLL_S))
    assert seen == [("tcp://a:1", 1)] * 4
    assert told == [("tcp://a:1", 1)], "once, not at every poll"
    assert election.beats == ["standby"]  # once a second
    election.acquisitions = [None]
    election.row = LeaderRecord(5, "tcp://a:1", False)  # expired: an election is on
    assert await leadership.attempt() is None
    assert leadership.known_leader() == ("", 5)


@pytest.fixture
def address() -> str:
    return f"mem://standby-{uuid.uuid4().hex}"


async def replies(address: str, frames: list[bytes], count: int) -> list[wire.FromScheduler]:
    client = connect(address)
    try:
        for frame in frames:
            client.send(frame)
        got: list[wire.FromScheduler] = []
        while len(got) < count:
            got += [wire.decode_reply(f) for f in await asyncio.wait_for(client.recv_batch(), 5)]
        return got
    finally:
        await client.close()


async def test_a_standby_answers_every_hello_and_request_not_leader_and_garbage_an_error(
    address: str,
) -> None:
    transport = bind(address)
    leader: Callable[[], tuple[str, int]] = lambda: ("tcp://leader:5555", 4)  # noqa: E731
    serving = asyncio.ensure_future(Standby(transport, leader).serve())
    try:
        frames = [
            wire.encode(wire.ClientHello(wire.PROTOCOL_VERSION)),
            wire.encode(wire.GetStatus(7)),
            wire.encode(wire.Submit(8, [wire.JobSpec("t")])),
            b"\xc1 not msgpack",
        ]
        got = await replies(address, frames, 4)
    finally:
        serving.cancel()
        await asyncio.gather(serving, return_exceptions=True)
        await transport.close()
    assert got[:3] == [
        wire.NotLeader(0, "tcp://leader:5555", 4),
        wire.NotLeader(7, "tcp://leader:5555", 4),
        wire.NotLeader(8, "tcp://leader:5555", 4),
    ]
    assert isinstance(got[3], wire.ErrorReply)
    assert got[3].code == "bad_frame"
