"""The store actor: group-commits every write through a store backend (``base.StoreBackend``:
SQLite by default, in memory for unit tests) and runs the scheduler's reads in order with
those writes.

Whatever ``Write`` messages pile up while one transaction commits go into the next one,
together (group commit): an idle scheduler commits at once, a busy one commits hundreds of
jobs per transaction. Before committing, the store lets the actors that feed it finish what
they already have in hand (a few loop turns at most, never a timed wait), so the writes they
are about to make join the same transaction: a new job's insert and its lease commit
together. The transactions run as a commit chain (``StoreBackend.commit_chain``; SQLite's
runs in its database thread, ``sqlite_chain``), each taking what waits when the last one
ended, until nothing does; the chain reports each commit to this actor on the loop's thread,
and only then does each writer get its ``Written`` reply (one per writer per commit, sent
at once, not a loop turn later through this actor's mailbox), so acknowledgements always
follow durability. What a commit takes is
``write_queue.WriteQueue``'s choice: writes in arrival order, except that the leases and
results of jobs already durable go ahead of a bulk submission's inserts. If the backend refuses a
compare-and-swap (StoreInconsistent) or cannot write or read (StoreError: a full disk, the
file deleted under the scheduler, a PostgreSQL session gone), the store stops the scheduler
with that one error and acknowledges nothing more.

A ``Read`` runs after the writes received before it; ``read(store, Backend.method, *args)``
is how the scheduler asks, typed, with no SQL.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Concatenate, ParamSpec, TypeVar

from actors.errors import StoreError, StoreInconsistent
from actors.metrics import Histogram
from actors.runtime import PUBLISH, Actor
from actors.scheduler.messages import ChainEnded, Committed, Read, StoreFailed, Write, Written
from actors.scheduler.store.base import StoreBackend
from actors.scheduler.store.write_queue import WriteQueue

log = logging.getLogger("corral.store")

P = ParamSpec("P")
T = TypeVar("T")

# The most loop turns a commit waits for its feeders (the scheduler, and the strategy that
# feeds the scheduler) to empty their mailboxes. Two turns cover submit -> match -> lease.
MAX_FEEDER_TURNS = 4

# The backend's health check (for SQLite, that the file is still the one at its path: see
# sqlite_file.FileIdentity): at least this often while commits flow, and before the first
# commit after this long without one (it costs ~3 µs warm, ~25 µs after an idle gap: too
# much for every commit at 200 jobs/s, nothing once a second). An idle scheduler checks
# every WATCH_EVERY_S.
CHECK_EVERY_S = 1.0
WATCH_EVERY_S = 2.0


async def read(
    store: Actor,
    method: Callable[Concatenate[StoreBackend, P], Awaitable[T]],
    *args: P.args,
    **kwargs: P.kwargs,
) -> T:
    """Ask the store actor for one typed read, e.g. ``read(store, StoreBackend.jobs, ids)``;
    it runs after every write told to the store before it."""
    name = method.__name__  # the backend's own override, not the abstract method named
    reply: asyncio.Future[T] = asyncio.get_running_loop().create_future()
    store.tell(Read(lambda backend: getattr(backend, name)(*args, **kwargs), reply))
    return await reply


class StoreActor(Actor):
    """Group-committing writer over any backend; also answers the scheduler's reads."""

    def __init__(self, backend: StoreBackend, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__("store")
        self.backend = backend
        self.clock = clock
        self._checked_at = self._committed_at = clock()
        self.failed: StoreError | None = None
        self._stopping = False  # on_stop began: a commit reported now is not acknowledged
        self.commits = 0
        self.committed_ops = 0
        self.commit_latency = Histogram()
        # Actors whose pending messages are likely to end in a write (set by the brain).
        self.feeders: tuple[Actor, ...] = ()
        # What the next commit takes (a bulk submission's inserts cannot hold back leases).
        self.queue = WriteQueue()
        self._chain: asyncio.Task[None] | None = None  # the commit chain running, if any
        self._reading: set[asyncio.Task[None]] = set()  # reads being answered
        self._reads_after_chain: list[Read] = []  # answered when the running chain ends

    def tell(self, message: Any) -> None:
        """While a commit chain runs, writes and reads join its queue at once: the chain
        takes the next commit's writes the moment a commit ends (SQLite's in its database
        thread, whatever the loop is doing), and one still waiting in this mailbox for the
        loop's next turn would wait a whole commit more. The queue keeps them in the order
        told, as the mailbox did; when no chain runs, they go through the mailbox, which
        starts one (a chain that ends with one just added is followed by the next). A
        commit the chain reports as ended well is acknowledged at once
        (``_acknowledge_now``). Once the store has failed or is stopping, nothing joins a
        chain still running and nothing more is acknowledged."""
        if self.failed is None and not self._stopping:
            if isinstance(message, Committed) and message.error is None:
                self._acknowledge_now(message)
                return
            if self._chain is not None and isinstance(message, (Write, Read)):
                self.queue.add(message)
                return
        self.mailbox.put_nowait(message)

    async def open(self) -> None:
        """Open the backend (raises StoreError, one clear line, leaving nothing open)."""
        await self.backend.open()
        self._checked_at = self._committed_at = self.clock()

    async def on_start(self) -> None:
        if self.system is not None:
            self.spawn(self._watch(), "watch-store")

    async def on_stop(self) -> None:
        self._stopping = True
        self.queue.close()  # a running chain takes nothing more and ends
        for task in list(self._reading):
            task.cancel()
        if self._chain is not None:
            # Cancelled, as the store's own task is: a chain on the loop (PostgreSQL) must
            # not hold the shutdown for a commit the database never answers. SQLite's chain
            # in its thread ends after its transaction; close() is queued behind it. A
            # commit reported once stopping began is not acknowledged (``tell`` leaves it
            # in the mailbox, which nothing reads again).
            self._chain.cancel()
            await asyncio.wait([self._chain])  # never raises the chain's error or ours away
        await self.backend.close()
        note = self.backend.left_behind()
        if note is not None and self.failed is None:  # a failure has said its one line
            log.warning("%s", note)

    async def _watch(self) -> None:
        """Check the backend while idle, so a scheduler nobody talks to still stops when
        its storage is gone."""
        while True:
            await asyncio.sleep(WATCH_EVERY_S)
            if self.clock() - self._checked_at >= WATCH_EVERY_S:
                try:
                    self._verify()
                except StoreError as exc:
                    await self._stop_for(exc)

    def _verify(self) -> None:
        self._checked_at = self.clock()
        self.backend.verify()

    async def _stop_for(self, exc: StoreError) -> None:
        """Stop the scheduler with ``exc`` as its one error line, and never commit again."""
        self.failed = exc
        if self.system is None:
            raise exc
        log.debug("store stopping: %s", exc)
        self.system.fail(exc)
        await asyncio.Event().wait()  # parked until the system cancels every actor

    async def _run(self) -> None:
        await self.on_start()
        mailbox, queue = self.mailbox, self.queue
        while True:
            await self._receive(await mailbox.get())
            while not mailbox.empty():
                await self._receive(mailbox.get_nowait())
            if self._chain is not None or not queue or self.failed is not None:
                continue
            turns = 0
            while turns < MAX_FEEDER_TURNS and self._feeders_busy():
                turns += 1
                await asyncio.sleep(0)  # one loop turn: the feeders run, maybe write
                while not mailbox.empty():
                    await self._receive(mailbox.get_nowait())
            self._start_chain()

    def _start_chain(self) -> None:
        """Commit what waits, and what arrives meanwhile, until the queue runs dry: each
        transaction is reported as a ``Committed`` message, the chain's end as
        ``ChainEnded`` (after them all), which starts the next chain if writes wait."""
        chain = asyncio.create_task(self.backend.commit_chain(self.queue.take, self.tell))
        chain.add_done_callback(lambda task: self.tell(ChainEnded(task)))
        self._chain = chain

    async def _receive(self, message: Any) -> None:
        if isinstance(message, Committed):
            await self._committed(message)
        elif isinstance(message, ChainEnded):
            self._chain = None
            if not message.task.cancelled() and message.task.exception() is not None:
                raise message.task.exception()  # a defect, not a storage failure: crash loudly
            reads, self._reads_after_chain = self._reads_after_chain, []
            for request in reads:
                await self._answer(request)
        elif isinstance(message, StoreFailed):
            await self._fail(message.error)
        elif message is PUBLISH:
            self._publish_metrics()
        else:
            self.queue.add(message)

    def _acknowledge_now(self, committed: Committed) -> None:
        """A transaction of the chain ended well: acknowledge its writes as the chain
        reports it (on the loop's thread: SQLite's chain posts it there), not a loop turn
        later through this actor's mailbox. Each writer's ``Written`` is then in its
        mailbox before the loop's next turn. If the backend's check fails, nothing of it
        is acknowledged, nothing more ever is, and this actor stops the scheduler."""
        try:
            if committed.writes:
                self._acknowledge(committed.writes, committed.ops, committed.seconds)
            self._route_reads(committed.reads)
        except Exception as exc:
            # Raised in a loop callback (SQLite's report), it would only be logged: this
            # actor's task raises it instead, a StoreError as a stop, a defect as a crash.
            self.failed = (
                exc
                if isinstance(exc, StoreError)
                else StoreError(self.backend.where, f"acknowledging a commit failed: {exc!r}")
            )
            self.queue.close()  # the chain commits nothing more
            self.mailbox.put_nowait(StoreFailed(exc))

    async def _committed(self, committed: Committed) -> None:
        """Stop for the error of a transaction of the chain (a commit that ended well is
        acknowledged at once by ``_acknowledge_now``, unless the store had failed)."""
        if self.failed is None and committed.error is not None:
            await self._fail(committed.error)
        # else: stopped meanwhile (the watch, a read): acknowledge nothing more

    async def _fail(self, error: BaseException) -> None:
        """Stop the scheduler for a storage failure (a refused compare-and-swap named as
        one), or crash it for anything else: a defect."""
        if isinstance(error, StoreInconsistent):
            where = self.backend.where
            error = StoreError(
                where,
                f"{where} disagrees with the scheduler's memory ({error}): another "
                "writer, or a damaged file; stopping rather than risk double billing",
            )
        if not isinstance(error, StoreError):
            raise error  # a defect, not a storage failure: crash loudly
        await self._stop_for(error)

    def _route_reads(self, reads: list[Read]) -> None:
        """Answer the reads a commit included, beside the next commit if the backend can."""
        if not (self.system is not None and self.backend.reads_beside_commits()):
            # Once this chain has ended and before the next starts: one connection cannot
            # serve a read and a commit at once (``reads_beside_commits``).
            self._reads_after_chain += reads
            return
        for request in reads:  # in its own task: the next chain need not wait
            task = asyncio.create_task(self._answer(request), name="store.read")
            self._reading.add(task)  # a reference until it ends (``_answer`` never raises)
            task.add_done_callback(self._reading.discard)

    def _feeders_busy(self) -> bool:
        return any(not feeder.mailbox.empty() for feeder in self.feeders)

    def _acknowledge(self, writes: list[Write], n_ops: int, seconds: float) -> None:
        """After a commit returned: check the storage if due, count, and reply to each
        writer once with the tags of its writes."""
        now = self.clock()
        # Before any reply: a commit the backend cannot keep is not durable.
        if now - self._committed_at > CHECK_EVERY_S or now - self._checked_at >= CHECK_EVERY_S:
            self._verify()
        self._committed_at = now
        self.commit_latency.observe(seconds)
        self.commits += 1
        self.committed_ops += n_ops
        tags: dict[Actor, list[Any]] = {}
        for write in writes:
            tags.setdefault(write.reply_to, []).append(write.tag)
        for writer, committed in tags.items():
            writer.tell(Written(committed))

    def metrics(self) -> dict[str, Any]:
        return {
            "commits": self.commits,
            "ops": self.committed_ops,
            "writes_ahead_of_bulk": self.queue.went_ahead,
            "commit_latency": self.commit_latency.snapshot(),
            **self.backend.counters(),
        }

    async def _answer(self, request: Read) -> None:
        try:
            result = await request.call(self.backend)
        except StoreError as exc:
            if self.system is not None:
                # The storage failed, not the question: stop as a failed commit does, with
                # this one line. The reader is left waiting and is cancelled with the rest
                # of the system, instead of crashing on the error with a traceback.
                await self._stop_for(exc)
            if not request.reply.done():
                request.reply.set_exception(exc)
            return
        except Exception as exc:
            if not request.reply.done():
                request.reply.set_exception(exc)
            return
        if not request.reply.done():
            request.reply.set_result(result)
