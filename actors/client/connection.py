"""The client SDK's connection to the scheduler: requests matched to replies by request id,
and a watchdog that keeps every request honest about time.

What a caller is promised:
- a frame larger than the protocol allows is refused before it is sent (RequestRefused,
  code ``too_large``, naming the size and the limit); a refusal the scheduler sends
  carrying the request id reaches its caller at once;
- a request that gets no reply fails with RequestTimedOut after ``request_timeout``, or
  sooner, after ``silence_timeout``, once the scheduler stopped answering the hellos the
  watchdog sends while requests are in flight (a live scheduler answers them in
  milliseconds, even while it commits a large submission);
- when the scheduler restarted (its Welcome carries a new instance id), or the client
  moved to another scheduler (several addresses: a standby named the leader, or the one
  it talked to stopped answering; see ``actors.link``), requests that are safe to repeat
  (reads, cancels, submissions whose every job has an idempotency key) are sent again, and
  so are those a standby answered with NotLeader (it did nothing with them); any other
  in-flight request fails with RequestLost, since it may or may not have been applied;
  waits and subscriptions are registered again.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import time
from collections.abc import AsyncGenerator, Callable, Sequence
from typing import Any, Self

from actors.addresses import parse, spoken
from actors.client.pending import InFlight, Waiting, describe, repeatable
from actors.config import env_address
from actors.errors import RequestLost, RequestRefused, RequestTimedOut, SchedulerUnreachable
from actors.keys import client_keys
from actors.link import Link
from transport import protocol as wire
from transport.errors import BadFrame, TransportError

log = logging.getLogger("corral.client")

# While requests are in flight the watchdog says hello this often, so a scheduler that
# died is noticed in seconds; with only waits or subscriptions outstanding, every
# RECHECK_S (that also reveals a restart, after which waits must be registered again).
PROBE_S = 0.5
RECHECK_S = 2.0
# Nothing heard for this long while a request is in flight: the scheduler has stopped.
# A live scheduler's gateway answers a hello at once (commits run in the store's thread),
# so 10 s leaves room for a loaded machine's pauses and still fails well before 60 s.
SILENCE_S = 10.0
# With several schedulers: the one talked to left our probes unanswered this long (or
# half the silence timeout, if shorter): try another. Probes go every PROBE_S while
# requests are in flight, and a live scheduler answers in milliseconds; 3 s leaves room
# for a loaded machine's pauses and moves well before the silence timeout fails requests.
MOVE_AFTER_S = 3.0

# What a watch's queue holds: its frames, or the refusal (or eviction) that ends it.
Watched = wire.Events | wire.ErrorReply


async def _either(first: asyncio.Event, second: asyncio.Event) -> None:
    """Until one of the two events is set."""
    waits = [asyncio.ensure_future(first.wait()), asyncio.ensure_future(second.wait())]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()


class Connection:
    """One DEALER connection to the scheduler and the bookkeeping of its requests."""

    def __init__(
        self,
        address: str | Sequence[str] | None = None,
        *,
        connect_timeout: float = 5.0,
        request_timeout: float = 60.0,
        silence_timeout: float = SILENCE_S,
        key: str | os.PathLike[str] | None = None,
        server_key: str | os.PathLike[str] | None = None,
    ) -> None:
        # One scheduler at a time; with several, the leader is followed (actors.link). A bad
        # address, or key files that cannot be used, raise ConfigError here. ``key`` is our
        # .key_secret file, ``server_key`` the scheduler's .key (both or neither).
        keys = client_keys(os.fspath(key or ""), os.fspath(server_key or ""))
        addresses = parse(address or env_address())
        self.link = Link(addresses, self._say_hello, log, "client", None, keys)
        self.link.on_move = self._moved
        self.connect_timeout = connect_timeout
        self.request_timeout = request_timeout
        self.silence_timeout = silence_timeout
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._inflight: dict[int, InFlight] = {}
        self._submit_waits: dict[int, int] = {}  # Submit request id -> its Wait's request id
        self._waits: dict[int, Waiting] = {}
        # A watch's frames; an ErrorReply (subscription refused or evicted) ends it.
        self._watches: dict[int, tuple[int | None, asyncio.Queue[Watched]]] = {}
        self._instance = ""
        # The leader changed since the last Welcome (we moved, or the scheduler stood
        # down): its next Welcome is a restart for us, whatever its instance.
        self._leader_changed = False
        self._last_heard = 0.0
        self._silence_told = False  # "scheduler unreachable" said for this silence
        self._last_hello = 0.0
        self._tasks: list[asyncio.Task[None]] = []
        # Our hello refused for our key's role (a worker key used by a client): why.
        self._hello_refused = ""
        self._refused = asyncio.Event()

    @property
    def address(self) -> str:
        """The scheduler talked to now (one of ``link.addresses``, or the leader one named)."""
        return self.link.address

    async def connect(self) -> Self:
        self.link.open()
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._read_loop()),
            loop.create_task(self._watchdog()),
            loop.create_task(self.link.seek()),  # hellos until a leader welcomes us
            loop.create_task(self.link.watch(self._move_after)),
        ]
        try:
            try:
                async with asyncio.timeout(self.connect_timeout):  # see Link._woken
                    await _either(self.link.welcomed, self._refused)
                if not self.link.welcomed.is_set():
                    raise RequestRefused("forbidden", self._hello_refused)
            except TimeoutError:
                standbys = spoken(self.link.standbys)
                addresses = spoken(self.link.addresses)
                raise SchedulerUnreachable(addresses, self.connect_timeout, standbys) from None
        except BaseException:
            await self.close()  # no task left pending, no socket left open
            raise
        return self

    async def close(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.link.close()

    def _move_after(self) -> float:
        return min(MOVE_AFTER_S, self.silence_timeout / 2)

    # ---------------------------------------------------------------- sending

    def _send(self, message: wire.Message) -> None:
        if self.link.transport is None:
            raise RuntimeError("client is not connected; use `async with AsyncClient(...)`")
        frame = wire.encode(message)
        if len(frame) > wire.MAX_FRAME_BYTES:
            raise RequestRefused(
                "too_large",
                f"{type(message).__name__} of {len(frame):,} bytes exceeds the frame limit of "
                f"{wire.MAX_FRAME_BYTES:,} bytes (MAX_FRAME_BYTES); nothing was sent",
            )
        self.link.send(frame)

    def _say_hello(self) -> None:
        self._last_hello = time.monotonic()
        self.link.probing()  # a live scheduler answers a hello at once
        self._send(wire.ClientHello(wire.PROTOCOL_VERSION))

    def _track(self, rid: int, message: wire.Message, fail: Callable[[Exception], None]) -> None:
        self._inflight[rid] = InFlight(message, time.monotonic(), fail)

    async def _request(self, build: Callable[[int], wire.Message]) -> Any:
        """Send one request and return its reply; raises what the watchdog or the reply
        decided (RequestRefused, RequestTimedOut, RequestLost)."""
        rid = next(self._ids)
        message = build(rid)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        def fail(error: Exception) -> None:
            if not future.done():
                future.set_exception(error)

        self._pending[rid] = future
        try:
            self._send(message)
            self._track(rid, message, fail)
            return await future
        finally:
            self._pending.pop(rid, None)
            self._inflight.pop(rid, None)

    # ---------------------------------------------------------------- watchdog

    async def _watchdog(self) -> None:
        tick = min(PROBE_S, self.request_timeout / 4, self.silence_timeout / 4)
        while True:
            await asyncio.sleep(tick)
            now = time.monotonic()
            if self._inflight:
                self._expire(now)
            # With only waits outstanding, still probe well within the silence timeout:
            # a live scheduler with nothing to say must not look unreachable.
            every = PROBE_S if self._inflight else min(RECHECK_S, self.silence_timeout / 2)
            busy = self._inflight or self._waits or self._watches
            silent = now - self._last_heard
            if busy and silent >= self.silence_timeout and not self._silence_told:
                # A wait or a watch outlives a restart (it is sent again), so it goes on;
                # but nobody should wait in silence for a scheduler that may be gone.
                self._silence_told = True
                log.warning(
                    "scheduler unreachable at %s: no answer for %.0fs; still waiting",
                    self.address,
                    silent,
                )
            if busy and now - self._last_hello >= every:
                # A probe that cannot even be queued is a probe not answered: the
                # expiry above reports it; the watchdog itself must never die.
                with contextlib.suppress(TransportError):
                    self._say_hello()

    def _expire(self, now: float) -> None:
        silent = now - self._last_heard
        for rid, entry in list(self._inflight.items()):
            age = now - entry.sent_at
            if age >= self.request_timeout:
                why = (
                    "no reply (the scheduler answered this client before: it may be "
                    "stopped, restarting or overloaded)"
                )
                timeout = self.request_timeout
            elif age >= self.silence_timeout and silent >= self.silence_timeout:
                why = "the scheduler stopped answering (it answered this client before)"
                timeout = self.silence_timeout
            else:
                continue
            del self._inflight[rid]
            entry.fail(RequestTimedOut(self.address, timeout, describe(rid, entry.message), why))

    def _moved(self) -> None:
        """The link moved to another scheduler: its next Welcome is a restart for us, and
        what was resent to the old one after a hello_first did not reach the new one."""
        self._leader_changed = True
        for entry in self._inflight.values():
            entry.resent = False

    def _restarted(self, leader_changed: bool) -> None:
        """A new scheduler process answered: what the old one had not answered is lost."""
        now = time.monotonic()
        if leader_changed:
            what = f"the leader changed (this client now talks to {self.address})"
        else:
            what = f"the scheduler at {self.address} restarted"
        for rid, entry in list(self._inflight.items()):
            if entry.resent:  # sent again to this very scheduler after its hello_first
                entry.resent = False
            elif entry.refused or repeatable(entry.message):
                entry.sent_at, entry.refused = now, False
                self._send(entry.message)
            else:
                del self._inflight[rid]
                entry.fail(
                    RequestLost(
                        f"{what} while {describe(rid, entry.message)} was in flight: it may "
                        "or may not have been committed; check (`corral jobs`) before "
                        "submitting again, or give jobs idempotency keys so that repeating "
                        "is safe"
                    )
                )
        for rid, waiting in self._waits.items():
            if waiting.remaining:
                self._send(wire.Wait(rid, sorted(waiting.remaining)))
        for rid, (job_id, _) in self._watches.items():
            self._send(wire.Subscribe(rid, job_id))

    def _other_database(self, database: str) -> None:
        """Our only scheduler now serves another database: every job id we wait for,
        watch or asked about means another job there. All of it fails."""
        error = RequestLost(
            f"the scheduler at {self.address} now serves another database ({database}): "
            "the jobs this client was waiting for or asking about are not there"
        )
        for entry in self._inflight.values():
            entry.fail(error)
        self._inflight.clear()
        for waiting in self._waits.values():
            waiting.fail(error)
        self._waits.clear()  # their owners pop them too; nothing to register again
        # Watches are subscribed again, as after any restart: a watch of every event goes
        # on with the new database's; one of a job sees that id's events there (a limit).

    # ---------------------------------------------------------------- receiving

    async def _read_loop(self) -> None:
        link = self.link
        while True:
            frames = await link.batch()
            epoch = link.epoch
            for frame in frames:
                if link.epoch != epoch:
                    break  # moved to another scheduler: the rest is from the old one
                try:
                    reply = wire.decode_reply(frame)
                    if not isinstance(reply, wire.NotLeader):  # a standby is no answer
                        self._heard()
                    self._on_reply(reply)
                except BadFrame:
                    continue
                except TransportError:  # a resend that could not be queued: the
                    continue  # watchdog fails that request in time; keep reading

    def _heard(self) -> None:
        self._last_heard = time.monotonic()
        if self._silence_told:
            self._silence_told = False
            log.warning("scheduler at %s answers again", self.address)

    def _on_reply(self, reply: wire.FromScheduler) -> None:
        match reply:
            case wire.Outcomes(request_id=rid, outcomes=outcomes):
                waiting = self._waits.get(rid)
                if waiting is not None:
                    waiting.add(outcomes)
            case wire.Events(request_id=rid):
                watch = self._watches.get(rid)
                if watch is not None:
                    watch[1].put_nowait(reply)
            case wire.Welcome(instance=instance, term=term):
                verdict = self.link.check_database(reply.database_id, reply.database)
                if verdict == "passed":
                    return
                if verdict == "changed":
                    self._other_database(reply.database)
                self.link.welcome(term)
                changed, self._leader_changed = self._leader_changed, False
                if self._instance and (changed or instance != self._instance):
                    self._instance = instance
                    self._restarted(changed)
                self._instance = instance
            case wire.NotLeader(request_id=rid, leader=leader, term=term, database_id=db):
                entry = self._inflight.get(rid) if rid else None
                if entry is not None:
                    entry.refused = True
                self._leader_changed = True  # whoever welcomes us next leads anew
                self.link.not_leader(leader, term, db)
            case wire.ErrorReply(code="forbidden", request_id=0, message=text) if (
                not self.link.welcomed.is_set()
            ):
                # Our hello, refused for our key's role: no Welcome will come. Said at
                # once, not after connect_timeout as "no scheduler answered".
                self._hello_refused = text
                self._refused.set()  # wakes connect(), which raises it
            case wire.ErrorReply(code="hello_first", request_id=rid):
                # The scheduler restarted and does not know us: it did not act on
                # the request, so say hello and send it again.
                self._say_hello()
                entry = self._inflight.get(rid)
                if entry is not None:
                    entry.resent = True
                    self._send(entry.message)
            case wire.ErrorReply(request_id=rid, code=code, message=text):
                entry = self._inflight.pop(rid, None)
                error = RequestRefused(code, text, reply.retry_after)
                if entry is not None:
                    entry.fail(error)
                elif rid in self._waits:
                    self._waits[rid].fail(error)
                elif rid in self._watches:
                    self._watches[rid][1].put_nowait(reply)
            case (
                wire.Submitted()
                | wire.StatusReply()
                | wire.JobReply()
                | wire.CancelReply()
                | wire.JobList()
                | wire.RequeueReply()
                | wire.WorkflowSubmitted()
                | wire.WorkflowReply()
                | wire.LimitsReply()
                | wire.ScheduleReply()
            ):
                rid = reply.request_id
                future = self._pending.get(rid)
                if future is not None and not future.done():
                    future.set_result(reply)
                if isinstance(reply, wire.Submitted) and rid in self._submit_waits:
                    self._inflight.pop(rid, None)  # acknowledged; now it is a wait
                    waiting = self._waits.get(self._submit_waits[rid])
                    if waiting is not None:  # now, before any Outcomes read in this batch
                        waiting.arm(reply.job_ids)

    async def _stream(
        self, job_id: int | None, subscribed: asyncio.Event | None = None
    ) -> AsyncGenerator[wire.Event, None]:
        rid = next(self._ids)
        frames: asyncio.Queue[Watched] = asyncio.Queue()
        self._watches[rid] = (job_id, frames)
        self._send(wire.Subscribe(rid, job_id))
        if subscribed is not None:
            subscribed.set()
        try:
            while True:
                frame = await frames.get()
                if isinstance(frame, wire.ErrorReply):
                    raise RequestRefused(frame.code, frame.message)
                self._send(wire.EventsAck(rid))
                if frame.dropped:
                    yield wire.Event(
                        0,
                        time.time(),
                        "dropped",
                        token=frame.dropped,
                        message=f"{frame.dropped} event(s) dropped",
                    )
                for event in frame.events:
                    yield event
        finally:
            self._watches.pop(rid, None)
            if self.link.transport is not None:
                with contextlib.suppress(RuntimeError, TransportError):
                    self._send(wire.Unsubscribe(rid))
