"""Leadership: the loops a scheduler with standbys runs against the election
(``store.election``; on PostgreSQL, ``store.postgres_leader``).

- As a standby (``campaign``): try to take the term every ``POLL_S``; in between, read who
  leads (what the standby's NotLeader answers say) and write its presence row.
- As the leader (``hold``): renew the term every quarter of the TTL and write its presence
  row, refreshing what ``corral status`` shows of the cluster. ``hold`` returns the moment
  the term is lost: a renewal found it taken, or this scheduler's own monotonic clock says
  the term is about to expire (``STEP_DOWN_EARLY``) since the last renewal that succeeded
  (counted from before that renewal was sent, so never later than the database's expiry).
  A leader cut off from the database therefore stops within its term, before a standby
  can take the next one.

Whatever ``hold`` misses (a pause of the whole process, say), the fencing check at the
start of every commit catches: a lost term never commits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import msgspec

from actors.errors import NotLeaderAnymore, StoreError
from actors.scheduler.ratelog import RateLimitedLog
from actors.scheduler.store.election import Election, LeaderRecord
from transport import protocol as wire

log = logging.getLogger("corral.leadership")

# A standby tries to take an expired term this often: a killed leader (TTL 2 s) is
# replaced within TTL + POLL_S. Each try is one indexed UPDATE of one row.
POLL_S = 0.25
# Every scheduler writes its presence row this often, for `corral status`.
BEAT_S = 1.0
# A scheduler whose presence row is older than this is not listed (gone, or cut off).
SEEN_S = 5.0
# The leader stands down by its own clock this fraction of the TTL before its term would
# expire in the database (0.25 s of the default 2 s), not at the very end: between its
# clock saying so and its brain being deposed are a few turns of a busy event loop, and a
# loaded leader cut off from the database was seen welcoming a client 11 ms past the
# database's expiry without this margin. The renewals at 1/4, 2/4 and 3/4 of the TTL
# still all get their try.
STEP_DOWN_EARLY = 1 / 8
# A standby's try that takes longer is stuck on a dead link: give up, reconnect, try again
# (a try is a few milliseconds, or ROW_LOCK_WAIT_S twice when it ends a stale leader's
# sessions).
ATTEMPT_TIMEOUT_S = 5.0


def stall_limit(lease: float, ttl: float) -> float:
    """How long the event loop that serves may go without running before the leader gives
    up its term (``serving_idle``; its renewals run on a thread of their own,
    ``election_thread``, and would otherwise keep the term for a scheduler stuck in one
    step, serving nobody, forever). Short enough that a standby takes over, a poll after
    the resignation, while the workers still hold their leases (they stop their own jobs a
    lease after their last acknowledged heartbeat) and can carry them to it; never shorter
    than the term itself, which is as long as a leader's loop could stall before."""
    return max(ttl, lease - ttl - POLL_S)


T = TypeVar("T")


async def within(seconds: float, awaitable: Awaitable[T]) -> T:
    """``awaitable``'s result, or TimeoutError after ``seconds``. Not ``asyncio.wait_for``:
    on Python 3.11 that swallows a cancellation that arrives as the awaitable finishes, and
    a cancelled ``hold`` would then renew a term nobody serves, forever."""
    async with asyncio.timeout(max(0.0, seconds)):
        return await awaitable


class Term(msgspec.Struct, frozen=True):
    """A term this scheduler took: its number, and this process's monotonic time just
    before the acquiring statement was sent (the term's expiry is counted from there)."""

    number: int
    since: float


class Leadership:
    """One scheduler's election loops; ``address`` is where it serves, ``serving_idle``
    how long the loop that serves has not run, and ``stall_limit`` how long it may (see
    ``stall_limit``): over it, a leader gives up its term and a standby does not try."""

    def __init__(
        self,
        election: Election,
        ttl: float,
        address: str,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        serving_idle: Callable[[], float] = lambda: 0.0,
        stall_limit: float = math.inf,
    ) -> None:
        self.election = election
        self.serving_idle = serving_idle
        self.stall_limit = stall_limit
        self.ttl = ttl
        self.address = address
        self.clock = clock
        self.sleep = sleep
        self.leader = LeaderRecord(0, "", False)  # as last read
        self.view: wire.ClusterView | None = None  # while leading, for the status
        self._beat_at = -math.inf
        self._warn = RateLimitedLog(log, interval=10.0)

    def known_leader(self) -> tuple[str, int]:
        """Where the leader is and its term, as a standby last read them ("" while no
        term is live: an election is on). Never this scheduler's own address: a standby
        that last read itself as the leader is one that has just lost its term without
        reading the row since (cut off from the database), so it knows of no leader."""
        live = self.leader.live and self.leader.address != self.address
        return (self.leader.address if live else "", self.leader.term)

    def cluster(self) -> wire.ClusterView | None:
        return self.view

    # ------------------------------------------------------------------ standby

    async def attempt(self, *, reclaim: bool = False) -> Term | None:
        """One try at the term (``reclaim``: also if held at this scheduler's own address,
        once at start-up); on failure, read who leads and write the standby's presence."""
        stalled = self.serving_idle()
        if stalled >= self.stall_limit:  # it could not serve the term
            self._warn(
                "not trying for the term: this scheduler's event loop has not run for %.1f s",
                stalled,
            )
            return None
        since = self.clock()
        try:
            number = await within(ATTEMPT_TIMEOUT_S, self.election.acquire(reclaim=reclaim))
            if number is not None:
                self.leader = LeaderRecord(number, self.address, True)
                self.view = wire.ClusterView(
                    self.address, number, [wire.SchedulerView(self.address, "leader", 0.0)]
                )
                return Term(number, since)
            self.leader = await within(ATTEMPT_TIMEOUT_S, self.election.leader())
            await within(ATTEMPT_TIMEOUT_S, self._beat("standby"))
        except (StoreError, TimeoutError) as exc:
            self._warn("standing by without the database: %s", str(exc) or "no answer")
        return None

    async def campaign(self, on_leader: Callable[[tuple[str, int]], None] | None = None) -> Term:
        """Try every ``POLL_S`` until this scheduler takes a term; ``on_leader`` hears
        of each change of the known leader (``known_leader``) meanwhile."""
        shown: tuple[str, int] | None = None
        while True:
            term = await self.attempt()
            if term is not None:
                return term
            if on_leader is not None and self.known_leader() != shown:
                shown = self.known_leader()
                on_leader(shown)
            await self.sleep(POLL_S)

    # ------------------------------------------------------------------ leader

    async def hold(self, term: Term) -> NotLeaderAnymore:
        """Renew ``term`` until it is lost; returns why (never raises StoreError)."""
        renewed_at = term.since
        held_for = self.ttl * (1 - STEP_DOWN_EARLY)  # without a renewal
        while True:
            deadline = renewed_at + held_for
            await self.sleep(max(0.0, min(self.ttl / 4, deadline - self.clock())))
            sent = self.clock()
            if sent >= deadline:
                return NotLeaderAnymore(
                    self.election.where,
                    term.number,
                    f"term {term.number} lapsed by this scheduler's own clock: no renewal "
                    f"succeeded for {held_for:g} s of its {self.ttl:g} s (--leader-ttl)",
                )
            stalled = self.serving_idle()
            if stalled >= self.stall_limit:
                # Resigned from here: the loop that would resign it is the one stuck.
                await self.resign(term)
                return NotLeaderAnymore(
                    self.election.where,
                    term.number,
                    f"this scheduler's event loop has not run for {stalled:.1f} s: "
                    f"term {term.number} resigned to a standby",
                )
            try:
                kept = await within(deadline - sent, self.election.renew(term.number))
            except (StoreError, TimeoutError) as exc:
                self._warn("could not renew term %d: %s", term.number, str(exc) or "no answer")
                continue
            if not kept:
                return NotLeaderAnymore(
                    self.election.where, term.number, await self._taken(term.number)
                )
            renewed_at = sent
            if self.clock() - self._beat_at >= BEAT_S:
                # Bounded, so a database that stops answering here is still noticed in time.
                left = renewed_at + held_for - self.clock()
                with contextlib.suppress(TimeoutError):
                    await within(left, self._beat("leader", term.number))

    async def _taken(self, number: int) -> str:
        try:
            self.leader = await self.election.leader()
        except StoreError:
            return f"term {number} was taken over or ended"
        now = self.leader
        if now.term == number:
            return f"term {number} expired before it was renewed"
        where = f" by {now.address}" if now.address and now.address != self.address else ""
        return f"term {now.term} was taken{where}"

    async def resign(self, term: Term) -> None:
        """End ``term`` now so a standby takes over within a poll (best effort)."""
        try:
            await within(self.ttl, self.election.resign(term.number))
        except (StoreError, TimeoutError) as exc:
            log.info("could not resign term %d (it lapses by itself): %s", term.number, exc)

    # ------------------------------------------------------------------ presence

    async def _beat(self, role: str, term: int = 0) -> None:
        if self.clock() - self._beat_at < BEAT_S:
            return
        try:
            await self.election.beat(role)
            self._beat_at = self.clock()
            if role == "leader":
                peers = await self.election.peers(SEEN_S)
                self.view = wire.ClusterView(
                    self.address,
                    term,
                    [wire.SchedulerView(p.address, p.role, round(p.seen_s, 1)) for p in peers],
                )
        except StoreError as exc:
            self._warn("could not write this scheduler's presence: %s", exc)
