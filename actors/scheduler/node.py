"""A scheduler on PostgreSQL, where several share one database and one leads: the
process's life as a sequence of terms.

Start-up: connect to the database and bring its schema up to date (``election.open``;
an unusable database ends the process with one line), bind the address (same), then try
to lead at once: a scheduler restarted on its own address takes back a term held there
by its dead predecessor (binding the address proved nobody serves there any more).

Standing by: the ``Standby`` edge answers every frame NotLeader naming the leader,
``Leadership.campaign`` polls for the term, and a line on stdout says who leads (again
whenever that changes). The election (its database session, ``campaign`` and ``hold``)
runs on a thread of its own (``election_thread``): a long step of the loop that serves
never holds up a renewal.

Leading: a ``Brain`` for the term (fresh actors, state loaded from the database as after
a restart; its commits fenced with the term) serves on the same bound address, while
``Leadership.hold`` renews the term. The term ends one of three ways:
- lost (a renewal found it taken, its own clock says it lapsed, or a commit's fencing
  check refused): the Brain is deposed at once (nothing more is committed), its actors
  stop and its connections close, and the process stands by again in-process;
- the store failed (the database went away, say): the same, after resigning the term if
  the database still answers, and a pause of one TTL before campaigning again, so a
  healthier standby gets the term first;
- asked to stop (SIGTERM, SIGINT): the Brain stops cleanly, the term is resigned so a
  standby takes over within a poll, and the process exits 0.
Any other failure (an actor crashed, the database refuses the schema) resigns and ends the
process with one line, non-zero, for its supervisor to restart it as a standby.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable

from actors.config import SchedulerConfig, redact_dsn
from actors.errors import NotLeaderAnymore, StoreDamaged, StoreError
from actors.keys import scheduler_keys
from actors.runtime import settle_gc
from actors.scheduler.brain import Brain
from actors.scheduler.election_thread import ElectionThread
from actors.scheduler.leadership import Leadership, Term, stall_limit
from actors.scheduler.standby import Standby
from actors.scheduler.store.postgres_leader import PostgresElection
from transport import ServerTransport, bind

log = logging.getLogger("corral.node")


class Node:
    """One scheduler process on PostgreSQL; ``say`` prints a line on stdout (the start
    line, and every change of role)."""

    def __init__(self, config: SchedulerConfig, say: Callable[[str], None] = print) -> None:
        self.config = config
        self.say = say
        self.name = uuid.uuid4().hex[:16]  # this process, in the leader row and its sessions
        self.address = ""
        self.brain: Brain | None = None
        self.database_id = ""  # the database's identity, once open
        # Where the leader is and its term, as this scheduler last read them (("", 0):
        # none known yet); the dashboard of a standby names it.
        self.leader: Callable[[], tuple[str, int]] = lambda: ("", 0)
        self.stopping = asyncio.Event()
        # The election (its session, and Leadership's loops) runs on a thread of its own:
        # see election_thread. Every call to it goes through ``elections.run``.
        self.elections = ElectionThread()

    def stop(self) -> None:
        """Stop serving: a leader first stops its term cleanly and resigns it."""
        self.stopping.set()
        if self.brain is not None:
            self.brain.stop()

    async def run(self) -> None:
        """Serve until stopped; raises CorralError (one line) if start-up fails."""
        config = self.config
        keys = scheduler_keys(config.keys)  # ConfigError before anything is opened
        election = PostgresElection(config.db, self.name, "", config.leader_ttl)
        self.elections.start()
        on_election = self.elections.run
        try:
            try:
                await on_election(election.open())
                transport = bind(config.bind, keys)
            except BaseException:
                await on_election(election.close())
                raise
            self.address = election.address = config.advertise or transport.address
            try:
                self.database_id = election.database_id
                leadership = Leadership(
                    election,
                    config.leader_ttl,
                    self.address,
                    serving_idle=self.elections.serving_idle,
                    stall_limit=stall_limit(config.lease, config.leader_ttl),
                )
                await self._serve(transport, leadership)
            finally:
                # Best effort, and bounded: a database gone silent would otherwise hold
                # the exit for the connection's timeouts (10 s to reconnect).
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(config.leader_ttl):
                        await on_election(election.leave())
                await on_election(election.close())
                await transport.close()
        finally:
            await self.elections.close()

    async def _serve(self, transport: ServerTransport, leadership: Leadership) -> None:
        self.leader = leadership.known_leader  # for the dashboard's standby page
        term = await self.elections.run(leadership.attempt(reclaim=True))
        while not self.stopping.is_set():
            if term is None:
                term = await self._stand_by(transport, leadership)
                if term is None:
                    return  # asked to stop
            pause = await self._lead(transport, leadership, term)
            term = None
            if pause and not self.stopping.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(pause):  # not wait_for: see Link._woken
                        await self.stopping.wait()

    async def _stand_by(self, transport: ServerTransport, leadership: Leadership) -> Term | None:
        """Answer NotLeader until this scheduler takes a term (None: asked to stop)."""
        answering = asyncio.ensure_future(
            Standby(transport, leadership.known_leader, self.database_id).serve()
        )
        stop = asyncio.ensure_future(self.stopping.wait())
        serving = asyncio.get_running_loop()
        campaign = asyncio.ensure_future(self.elections.run(self._campaign(leadership, serving)))
        try:
            done, _ = await asyncio.wait(
                {campaign, stop, answering}, return_when=asyncio.FIRST_COMPLETED
            )
            if answering in done:
                answering.result()  # raises what broke it
            return campaign.result() if campaign in done else None
        finally:
            for task in (answering, stop, campaign):
                task.cancel()
            await asyncio.gather(answering, stop, campaign, return_exceptions=True)

    async def _campaign(self, leadership: Leadership, serving: asyncio.AbstractEventLoop) -> Term:
        """Runs on the election's thread; the lines it says go out on ``serving``."""

        def standing_by(leader: tuple[str, int]) -> None:
            address, number = leader
            self.say(
                f"corral scheduler on {self.address}: standby (db "
                f"{redact_dsn(self.config.db)}; leader {address or 'being elected'}, "
                f"term {number})"
            )

        def tell(leader: tuple[str, int]) -> None:
            serving.call_soon_threadsafe(standing_by, leader)

        return await leadership.campaign(tell)

    async def _lead(self, transport: ServerTransport, leadership: Leadership, term: Term) -> float:
        """Serve as the leader of ``term`` until it ends; the pause before campaigning
        again (0 after a lost term or a stop). Raises what must end the process."""
        brain = Brain(
            self.config,
            transport=transport,
            term=term.number,
            name=self.name,
            cluster=leadership.cluster,
        )
        self.brain = brain
        holding = asyncio.ensure_future(self.elections.run(leadership.hold(term)))
        leading = asyncio.ensure_future(self._run(brain))
        try:
            await asyncio.wait({holding, leading}, return_when=asyncio.FIRST_COMPLETED)
            if not leading.done():
                lost = holding.result()
                brain.depose(lost)  # before anything else runs: no commit from here on
                # Its actors stop at once and close what they hold; only a start stuck on
                # a dead database link needs cancelling.
                await asyncio.wait({leading}, timeout=leadership.ttl)
                self._stepped_down(term, lost)
                return 0.0
            holding.cancel()
            try:
                leading.result()
            except NotLeaderAnymore as exc:  # a commit's fencing check refused
                self._stepped_down(term, exc)
                return 0.0
            except StoreDamaged:  # rows no corral wrote: every node would fail on them
                await self.elections.run(leadership.resign(term))
                raise
            except StoreError as exc:
                await self.elections.run(leadership.resign(term))
                self._stepped_down(term, exc)
                return leadership.ttl
            except BaseException:
                await self.elections.run(leadership.resign(term))
                raise
            await self.elections.run(leadership.resign(term))  # a clean stop
            return 0.0
        finally:
            self.brain = None
            for task in (holding, leading):
                task.cancel()
            await asyncio.gather(holding, leading, return_exceptions=True)

    async def _run(self, brain: Brain) -> None:
        try:
            await brain.start()
            if brain.deposed is not None:
                raise brain.deposed
            settle_gc()  # see cmd_scheduler: what start allocated lives as long as the term
            self.say(brain.summary())
            if self.stopping.is_set():
                brain.stop()
            await brain.run()
        finally:
            await brain.close()

    def _stepped_down(self, term: Term, why: StoreError) -> None:
        log.warning("stepped down from term %d: %s", term.number, why)
        self.say(
            f"corral scheduler on {self.address}: stepped down from term {term.number}: "
            f"{why}; standing by"
        )
