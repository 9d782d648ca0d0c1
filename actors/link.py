"""A worker's or client's link to the scheduler: one address at a time out of a list, the
hellos that find the leader, and the move to another address (issue 15).

The link owns the transport to the current address (``actors.addresses.Follower`` says
which) and whether that scheduler has welcomed us. It moves on when:
- the scheduler says it is a standby (``not_leader``): to the leader it names at once
  (listed or not; one log line naming both), or, when it names none we can use, to the
  next listed address after a short pause;
- a hello goes unanswered for ``Follower.answer_wait()`` (``seek``);
- a welcomed scheduler leaves our probes (hellos, heartbeats) unanswered past ``silence``
  seconds (``watch``, only with several addresses: with one there is nowhere else to go,
  and ZeroMQ reconnects by itself when that scheduler comes back).

Every scheduler names the database it serves (an id made when the database was created):
job ids and fencing tokens mean something only within one. The link keeps the first one
it was welcomed with. With several addresses, a scheduler serving another database is a
mistake in the list (a scheduler on its own SQLite file beside PostgreSQL ones, say): it
is passed over, with one error line naming both. With one address, its scheduler was
started on another database: the owner decides (``other_database``).

A move is a scheduler restart for the owner: a new transport (so a new peer for the
scheduler), not welcomed, the owner's ``on_move`` called; frames still being read from
the old transport are dropped (``epoch`` tells the read loop). The owner decides what a
restart means for it (a worker claims its leases in its next hello; a client re-sends
what is safe to repeat and fails the rest).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import Literal

from actors.addresses import REFUSED_PAUSE_S, Follower, spoken
from transport import ClientKeys, ClientTransport, connect
from transport.errors import Closed, TransportError

# A worker says so (once per search) when no scheduler has welcomed it for this long. A
# client does not: its connect timeout, or its watchdog's silence warning, speaks for it.
UNANSWERED_WARNING_S = 5.0

# What a scheduler's database means for the link's owner (``Link.check_database``).
Verdict = Literal["same", "passed", "changed"]


class Link:
    def __init__(
        self,
        addresses: Sequence[str],
        hello: Callable[[], None],
        log: logging.Logger,
        who: str,
        warn_after: float | None = UNANSWERED_WARNING_S,
        keys: ClientKeys | None = None,
    ) -> None:
        self.follower = Follower(addresses)
        self.keys = keys  # CURVE: our key pair and the schedulers' public key
        self._hello = hello  # sends our hello through ``send``
        self._log = log
        self._who = who  # "worker NAME", "client": who is speaking in log lines
        self.warn_after = warn_after  # a search this long is logged (once); None: never
        self.transport: ClientTransport | None = None
        self.epoch = 0  # moves so far: frames read before a move are from the old address
        self.welcomed = asyncio.Event()
        # Why no scheduler will ever serve us: our hello refused for our key's role
        # ("forbidden"; a worker given a client key). Set by the owner, which then leaves.
        self.refused = ""
        self.unwelcomed = asyncio.Event()  # a "not welcomed" episode began: hello again
        self.hello_at = 0.0  # our first hello of this episode to the current address
        self._unanswered_since = 0.0  # first probe sent since the last frame heard
        self._wake = asyncio.Event()  # welcomed, moved, or a move is due: the seek loop acts
        self._move_due: float | None = None  # a move is due after this pause
        self._closing: set[asyncio.Task[None]] = set()
        self.standbys: list[str] = []  # addresses that said NotLeader since the last Welcome
        self.database_id = ""  # the database of the schedulers we follow ("" before any)
        self._database_at = ""  # where we first found it, and how it was named
        self._database = ""
        self._told_other: set[str] = set()  # addresses already named as another database's
        self.on_move: Callable[[], None] = lambda: None

    @property
    def address(self) -> str:
        return self.follower.current

    @property
    def addresses(self) -> tuple[str, ...]:
        return self.follower.addresses

    def open(self) -> None:
        self.transport = connect(self.address, self.keys)

    async def close(self) -> None:
        transport, self.transport = self.transport, None
        if transport is not None:
            await transport.close()
        await asyncio.gather(*self._closing, return_exceptions=True)

    # ------------------------------------------------------------- frames

    def send(self, frame: bytes) -> None:
        """Queue one frame for the current scheduler (raises TransportError when its
        queue is full, RuntimeError before ``open``)."""
        if self.transport is None:
            raise RuntimeError("not connected")
        self.transport.send(frame)

    def probing(self) -> None:
        """The frame about to be sent asks for an answer at once (a hello, a heartbeat):
        the silence ``watch`` measures is from the first such frame left unanswered.
        Frames answered later or never (a Wait, progress, an events ack) do not count."""
        if not self._unanswered_since:
            self._unanswered_since = time.monotonic()

    async def batch(self) -> list[bytes]:
        """The next frames from the current scheduler. A caller that acts on them stops
        at a move (``epoch`` changed): the rest came from the address it left."""
        while True:
            transport = self.transport
            assert transport is not None, "open() first"
            try:
                frames = await transport.recv_batch()
            except Closed:
                if transport is self.transport:
                    raise
                continue  # left by a move: read the new one
            if transport is self.transport:
                self._unanswered_since = 0.0
                return frames

    # ------------------------------------------------------------- the conversation

    def welcome(self, term: int) -> float | None:
        """A Welcome arrived; returns when our first hello of this episode was sent (its
        answer renews a worker's leases from then), None if we were welcomed already."""
        self.follower.welcomed(term)
        if self.welcomed.is_set():
            return None
        hello_at, self.hello_at = self.hello_at, 0.0
        self.standbys.clear()
        self._move_due = None
        self.unwelcomed.clear()
        self.welcomed.set()
        self._wake.set()
        return hello_at

    def check_database(self, database_id: str, database: str = "") -> Verdict:
        """Check the database the scheduler at the current address serves, as it named it
        answering (a Welcome's or a NotLeader's ``database_id``; "" from one that names
        none). The first one named is ours. "passed": with several addresses, another
        database's scheduler is passed over (see the module docstring); "changed": our
        only address now serves another database, which becomes ours, and the owner must
        drop what it held from the old one."""
        if not database_id or database_id == self.database_id:
            return "same"
        if self.database_id and self.follower.several:
            self.pass_over(database or database_id)
            return "passed"
        changed = bool(self.database_id)
        if changed:
            self._log.warning(
                "%s: the scheduler at %s now serves another database (%s; before: %s)",
                self._who,
                self.address,
                database or database_id,
                self._database,
            )
        self.database_id, self._database_at = database_id, self.address
        self._database = database or database_id
        return "changed" if changed else "same"

    def refused_database(self, why: str) -> Verdict:
        """The scheduler refused our hello: it serves another database than the leases
        it listed (``why``, its words). "passed" as in ``check_database``; "changed": our
        only address, so we forget ours (the owner drops what it held) and join it."""
        if self.follower.several:
            self.pass_over(why)
            return "passed"
        self.database_id = ""
        return "changed"

    def pass_over(self, theirs: str) -> None:
        """Leave the current address at once: it serves another database (``theirs``
        says which) than the schedulers we follow."""
        if self.address not in self._told_other:
            self._told_other.add(self.address)
            self._log.error(
                "%s: the scheduler at %s serves another database than the one at %s (%s): "
                "every address given must be a scheduler of one database; passing it over "
                "(it says: %s)",
                self._who,
                self.address,
                self._database_at,
                self._database,
                theirs,
            )
        self.follower.suspect(self.address)
        self.unwelcome()
        self._step()

    def unwelcome(self) -> None:
        """Not welcomed any more (the scheduler forgot us, stepped down, or went silent)."""
        self.welcomed.clear()
        self.unwelcomed.set()

    def not_leader(self, leader: str, term: int, database_id: str = "") -> None:
        """The current scheduler is a standby: nothing we sent was acted on."""
        other = database_id and self.database_id and database_id != self.database_id
        if other and self.follower.several:
            self.pass_over(f"database {database_id}, as a standby")
            return
        was_leader = self.welcomed.is_set()
        if was_leader:
            self.unwelcome()
        if self.address not in self.standbys:
            self.standbys.append(self.address)
        target = self.follower.leader_named(leader, term)
        if target is not None:
            self._log.warning(
                "%s: the scheduler at %s is %s; following the leader at %s (term %d)",
                self._who,
                self.address,
                "no longer the leader" if was_leader else "a standby",
                target,
                term,
            )
            before = self.address
            self.follower.follow(target)
            self._move(before)
        elif self._move_due is None:  # once per move, however many frames it refused
            self._move_due = REFUSED_PAUSE_S
            self._wake.set()

    def silent(self, after: float) -> bool:
        """Whether a probe we sent is unanswered after ``after`` seconds."""
        since = self._unanswered_since
        return bool(since) and time.monotonic() - since > after

    def leave(self, why: str) -> None:
        """Stop talking to the current scheduler and try the next address."""
        self._log.warning("%s: %s; trying another scheduler", self._who, why)
        self.follower.suspect(self.address)
        self.unwelcome()
        self._move_due = 0.0
        self._wake.set()

    def _move(self, before: str) -> None:
        """Connect to ``follower.current`` instead of the transport we have (to
        ``before``); if that cannot even start, stay and try the next address soon."""
        try:
            new = connect(self.address, self.keys)
        except TransportError as exc:
            self._log.error("%s: cannot connect to %s: %s", self._who, self.address, exc)
            self.follower.suspect(self.address)
            self.follower.follow(before)
            self._move_due = REFUSED_PAUSE_S
            self._wake.set()
            return
        old, self.transport = self.transport, new
        self.epoch += 1
        self.hello_at = self._unanswered_since = 0.0
        self._move_due = None
        if old is not None:
            task = asyncio.get_running_loop().create_task(old.close())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
        self.on_move()
        self._wake.set()

    def _step(self) -> None:
        """To the next address (or stay, with one) and say hello again."""
        before = self.address
        if self.follower.next() != before:
            self._move(before)

    def _say_hello(self) -> None:
        if not self.hello_at:
            self.hello_at = time.monotonic()
        self.probing()
        # A hello that cannot even be queued is a hello not answered: the wait below
        # moves on; the loop itself must never die.
        with contextlib.suppress(TransportError):
            self._hello()

    async def _woken(self, timeout: float) -> bool:
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancellation
        # that arrives in the turn the event is set, and close() would wait on this loop.
        try:
            async with asyncio.timeout(timeout):
                await self._wake.wait()
        except TimeoutError:
            return False
        return True

    async def seek(self) -> None:
        """Runs for the link's life: while not welcomed, say hello, and move on when the
        current address does not answer or refuses. ZeroMQ queues frames for an address
        that does not answer yet and delivers them when a scheduler starts there, so each
        retry is one more hello it will answer; hence the growing pause."""
        since = time.monotonic()  # when this search began; 0.0: told already
        while True:
            if self.welcomed.is_set():
                await self.unwelcomed.wait()
                since = time.monotonic()
                continue
            warn = self.warn_after
            if warn is not None and since and time.monotonic() - since >= warn:
                since = 0.0
                self._still_trying()
            self._wake.clear()
            pause = self._move_due
            if pause is not None:
                if pause and await self._woken(pause):
                    continue  # followed a leader, or welcomed, meanwhile
                self._move_due = None
                self._step()
                self._wake.clear()
            self._say_hello()
            if await self._woken(self.follower.answer_wait()):
                continue
            if self.follower.several:
                self.follower.suspect(self.address)
            self._move_due = 0.0

    def _still_trying(self) -> None:
        if self.standbys:
            self._log.warning(
                "%s: no leader yet: %s answer as standby, naming no leader that answers; "
                "still trying",
                self._who,
                spoken(self.standbys),
            )
        else:
            self._log.warning(
                "%s: no scheduler has answered at %s yet; still trying",
                self._who,
                spoken(self.addresses),
            )

    async def watch(self, silence: Callable[[], float]) -> None:
        """With several addresses: leave a welcomed scheduler that leaves our probes
        (``probing``) unanswered for ``silence()`` seconds. A pause of our own (a stalled
        event loop) is not the scheduler's silence: a probe sent before it gets a fresh
        chance."""
        if not self.follower.several:
            return
        last = time.monotonic()
        while True:
            after = silence()
            await asyncio.sleep(after / 4)
            now = time.monotonic()
            if now - last > after / 2 and self._unanswered_since:
                self._unanswered_since = now  # we were not running: not its silence
            last = now
            if self.welcomed.is_set() and self.silent(after):
                self.leave(f"no answer from the scheduler at {self.address} for {after:g}s")
