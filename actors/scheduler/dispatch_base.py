"""The dispatcher's state and the moves every one of its frame handlers makes.

``DispatcherBase`` holds what the dispatcher actor (``actors.scheduler.dispatcher``)
knows: the connected workers (``WorkerConn`` each), the peers asked to say hello, its
counters, the results and credits gathered this turn, and the actors it talks to. Its
methods are the steps the frame handlers share: send a frame, pass a worker's credits to
the strategy (never more than its free slots), end leases and tell the scheduler, take a
worker out of the strategy's reach, drop a worker and reclaim its jobs, publish a worker
event, and build the status and metrics. The handlers (hello, heartbeats, results,
assignments, silences, progress) live in ``Dispatcher``, its only subclass; the two are
split only so each module stays readable.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import msgspec

from actors.runtime import Actor
from actors.scheduler.messages import (
    Forget,
    LeasesEnded,
    Publish,
    Send,
    StopsConfirmed,
    WorkerCredit,
    WorkerCredits,
    WorkerGone,
    WorkerLost,
    WorkerNames,
    WorkerResults,
)
from actors.scheduler.ratelog import AskedPeers, RateLimitedLog
from actors.scheduler.workerconn import WorkerConn, worker_views
from transport import Identity
from transport import protocol as wire

log = logging.getLogger("corral.dispatcher")


class DispatcherBase(Actor):
    """State and shared steps of the dispatcher; never spawned itself (``Dispatcher`` is)."""

    def __init__(
        self,
        strategy_name: str,
        heartbeat_interval: float,
        instance: str,
        lease: float,
        grace: float = 1.0,
        term: int = 0,
    ) -> None:
        super().__init__("dispatcher")
        self.instance = instance
        self.term = term  # the leader's term, in every Welcome (0: a single scheduler)
        # The database served (Welcome's fields; the brain sets them from the store).
        self.database_id = ""
        self.database = ""
        # Who a peer is, as its transport proved (the brain sets the transport's).
        self.identity: Callable[[bytes], Identity | None] = lambda peer: None
        self.lease = lease
        self.grace = grace
        self.strategy_name = strategy_name
        self.heartbeat_interval = heartbeat_interval
        self.workers: dict[bytes, WorkerConn] = {}
        self.asked = AskedPeers()  # told hello_first, no hello yet
        self.refused_leases = 0  # heartbeats claiming a lease the worker does not hold
        self.refused_progress = 0  # progress reports under a stale token
        self.refused_hellos = 0  # workers from another database
        self.refused_heartbeats = 0  # heartbeats listing more leases than the worker's slots
        self.unheld_leases = 0  # granted leases a worker's heartbeats proved it never held
        self.dropped_progress = 0
        self._results_out: list[tuple[bytes, str, list[wire.JobResult]]] = []
        self._credits_out: list[WorkerCredit] = []
        self._warn = RateLimitedLog(log)
        self.gateway: Actor
        self.scheduler: Actor
        self.strategy: Actor
        self.heartbeat: Actor
        self.events: Actor

    # ------------------------------------------------------- steps the handlers share

    def _send(self, peer: bytes, message: wire.Message) -> None:
        self.gateway.tell(Send(peer, message))

    def _unknown(self, peer: bytes) -> None:
        """A worker frame from a peer not connected here (forgotten after it expired, or
        after a restart): ask it to say hello, once until it does."""
        if not self.asked.should_ask(peer):
            return
        self._send(peer, wire.ErrorReply("hello_first", "unknown worker: say hello again"))

    def _credit(
        self, worker: WorkerConn, wanted: int, claimed: bool = False
    ) -> WorkerCredit | None:
        """Up to ``wanted`` slots (``claimed``: by the worker's word; WorkerConn.grant)."""
        return worker.credit(worker.grant(wanted, claimed))

    def _released(self, worker: WorkerConn, ended: int) -> None:
        """Leases ended without a result: pass on the credits they held back (excess)."""
        available = worker.state in ("alive", "suspect")
        credit = worker.credit(worker.release(ended, available) if ended else 0)
        if credit is not None:
            self._credits_out.append(credit)

    def _leased_as(self, peer: bytes, name: str) -> str:
        """The worker name its leases record (jobs' ``worker``, attempts' history): with
        keys, ``NAME@KEY``. A name is bound to its key this way: another key saying hello
        under the same name is another worker, and claims none of this one's leases, now
        or after a restart (``JobTable.adopt`` compares these names), whoever says hello
        first (refusing the second key would let a squatter lock the real worker out)."""
        who = self.identity(peer)
        return name if who is None else f"{name}@{who.key}"

    def _names(self, worker: WorkerConn, available: bool) -> None:
        """Tell the scheduler the name this worker's leases record, and whether it takes
        new jobs. Always ``_leased_as``: a bare name here would be stored with the next
        lease, and the worker's own claim of it after a restart refused."""
        name = self._leased_as(worker.peer, worker.name)
        self.scheduler.tell(WorkerNames(worker.peer, name, worker.tasks, available=available))

    def _unavailable(self, worker: WorkerConn) -> None:
        """No new jobs for this worker (dead, draining): the strategy forgets its credits."""
        worker.withdraw()
        self.strategy.tell(WorkerGone(worker.peer))
        self._names(worker, available=False)

    def _end(self, worker: WorkerConn, leases: list[tuple[int, int]], how: str, why: str) -> None:
        ended = sum(worker.end(job_id, token) for job_id, token in leases)
        self._released(worker, ended)
        why = f"{why} (worker {worker.name})"
        self.scheduler.tell(LeasesEnded(worker.peer, worker.name, leases, how, why))

    def _flush_results(self) -> None:
        """Pass on the results and freed slots of every worker heard this turn, as one
        message each: with many workers, the scheduler then writes once per turn, not
        once per worker. The freed slots go first: the strategy runs first in the next
        turn, and its picks for those slots reach the scheduler before the scheduler's
        turn begins, so it writes the leases with the results instead of a turn later.
        (The scheduler still gets the results before the picks: they are in its mailbox
        first.)"""
        if self._credits_out:
            self.strategy.tell(WorkerCredits(self._credits_out))
            self._credits_out = []
        if self._results_out:
            self.scheduler.tell(WorkerResults(self._results_out))
            self._results_out = []

    def _drop(self, peer: bytes, why: str, reason: str) -> None:
        worker = self.workers.pop(peer, None)
        if worker is None:
            return
        log.info("worker %s left (%s); reclaiming %d job(s)", worker.name, why, len(worker.running))
        if why != "expired":
            self._worker_event(worker, "left")
        self.strategy.tell(WorkerGone(peer))
        self.heartbeat.tell(Forget(peer))
        self._names(worker, available=False)
        if stopped := worker.confirmed(None):  # gone: silent past lease + grace, or left
            self.scheduler.tell(StopsConfirmed(stopped))
        if worker.running:
            lost = WorkerLost(peer, worker.name, list(worker.running), reason.format(worker.name))
            self.scheduler.tell(lost)

    def _worker_event(self, worker: WorkerConn, state: str) -> None:
        self.events.tell(
            Publish([("worker", 0, state, ",".join(worker.queues), worker.name, 0, -1.0, "")])
        )

    # ------------------------------------------------------------ status, metrics

    def status(self, fields: dict[str, Any]) -> wire.StatusView:
        workers = worker_views(self.workers.values(), time.monotonic())
        if fields.pop("running_hidden", False):
            workers = [msgspec.structs.replace(w, jobs=[]) for w in workers]
        counters = {
            **fields.pop("counters", {}),
            "refused_leases": self.refused_leases,
            "refused_progress": self.refused_progress,
            "unheld_leases": self.unheld_leases,
        }
        return wire.StatusView(
            workers=workers, strategy=self.strategy_name, counters=counters, **fields
        )

    def metrics(self) -> dict[str, Any]:
        health: dict[str, int] = {}
        for w in self.workers.values():
            health[w.state] = health.get(w.state, 0) + 1
        return {
            "workers": health,
            "refused_leases": self.refused_leases,
            "refused_progress": self.refused_progress,
            "refused_heartbeats": self.refused_heartbeats,
            "refused_hellos": self.refused_hellos,
            "unheld_leases": self.unheld_leases,
        }
