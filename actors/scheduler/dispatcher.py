"""The dispatcher actor: owns worker connections and the leases in flight to each.

Credit-based pull: a worker's hello announces its slots, and every result it
returns frees one (or as many as ``Results.credits`` says); the dispatcher passes
these credits to the strategy actor, never more than the worker's free slots, so a
worker is never sent more jobs than it can run. Committed leases arrive from the
scheduler (``Leased``) and go out in ``Assign`` frames packed below the frame limit,
numbered per connection and carrying the lease basis (the newest worker-clock
``sent_at`` heard). Results go to the scheduler, which checks their fencing tokens.

Hello is idempotent: a hello from a worker already connected (repeated, or after
a reconnect) updates it and is welcomed again; its leases are kept, and only the
claimed leases it does not already hold are sent for adoption, once. Heartbeats
renew leases and reconcile them both ways (see ``actors.scheduler.workerconn``): a granted
lease the worker does not hold is handed back for re-queueing at once, one it
holds without a grant is stopped. The work per frame is bounded by the worker's
slots, and what a hostile frame triggers is logged once per second at most.

Health comes from the heartbeat monitor: a ``dead`` worker gets no new work;
an ``expired`` one (silent for lease + grace) is forgotten and its leases are
handed back to the scheduler for reclaim, as are a leaving worker's (``Goodbye``
while still holding jobs: "worker stopped").

This module holds the frame and message handlers; the state they share and the steps
they have in common (sending, credits, ending leases, dropping a worker, the status)
are in ``actors.scheduler.dispatch_base``.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from typing import Any

from actors.scheduler.dispatch_base import DispatcherBase
from actors.scheduler.messages import (
    Adopt,
    Adopted,
    DeclaredLimits,
    FromWorker,
    Leased,
    LeasesEnded,
    PeerUnreachable,
    Publish,
    RevokeLease,
    Silent,
    StatusPart,
    StopsConfirmed,
    WorkerCredit,
    WorkerCredits,
)
from actors.scheduler.workerconn import WorkerConn
from transport import protocol as wire

log = logging.getLogger("corral.dispatcher")

# A hello may claim the jobs a worker runs plus results it has not had acknowledged; more
# than twice its slots is not a worker being honest. The rest are not adopted.
CLAIMS_PER_SLOT = 2
# Reasons recorded on the attempts a worker loses ("{}": the worker's name).
EXPIRED = "worker {} lost: no heartbeat for the lease time plus grace"
STOPPED = "worker stopped: {} left while still holding the job"


class Dispatcher(DispatcherBase):
    """The dispatcher actor (built as ``Dispatcher(strategy_name, heartbeat_interval,
    instance, lease, grace, term)``; the brain wires its peers in)."""

    async def handle(self, message: Any) -> None:
        if isinstance(message, FromWorker) and isinstance(message.message, wire.Results):
            self._results(message.peer, message.message)
            return
        # Anything else this actor says must follow the results and credits gathered so
        # far (a worker's credit must not reach the strategy after its WorkerGone).
        self._flush_results()
        match message:
            case Leased(leases=leases):
                self._assign(leases)
            case FromWorker(peer=peer, message=wire.Heartbeat() as beat):
                self._heartbeat(peer, beat)
            case Adopted():
                self._adopted(message)
            case RevokeLease(peer=peer, job_id=job_id, token=token, reason=reason):
                worker = self.workers.get(peer)
                if worker is not None and worker.revoke(job_id, token, message.confirm):
                    self._released(worker, 1)
                elif message.confirm:  # ended already (its result came first), or gone
                    self.scheduler.tell(StopsConfirmed([job_id]))
                self._send(peer, wire.StopJob(job_id, token, reason))
            case FromWorker(peer=peer, message=wire.WorkerHello() as hello):
                self._hello(peer, hello)
            case FromWorker(peer=peer, message=wire.Drain()):
                worker = self.workers.get(peer)
                if worker is not None and worker.state != "draining":
                    worker.state = "draining"
                    self._unavailable(worker)
            case FromWorker(peer=peer, message=wire.Goodbye(leases=held)):
                worker = self.workers.get(peer)
                if worker and held is not None and (unheld := worker.not_listed(held)):
                    self._end(worker, unheld, "unheld", "the worker left before starting it")
                self._drop(peer, "said goodbye", STOPPED)
            case Silent(peer=peer, state=state, silent_for=silent_for):
                self._health(peer, state, silent_for)
            case PeerUnreachable(peer=peer):
                worker = self.workers.get(peer)
                if worker is not None and worker.state == "alive":
                    worker.state = "dead"
                    self._unavailable(worker)
            case StatusPart(peer=peer, request_id=rid, fields=fields):
                self._send(peer, wire.StatusReply(rid, self.status(fields)))
            case FromWorker(peer=peer, message=wire.Progress(updates=updates)):
                self._progress(peer, updates)
            case _:
                raise TypeError(f"dispatcher got an unexpected message: {message!r}")

    # -------------------------------------------------------------------- hello

    def _hello(self, peer: bytes, hello: wire.WorkerHello) -> None:
        """Connect a worker, or update one already connected (idempotent: never drops it,
        never reclaims its jobs, adopts only claimed leases it does not hold yet)."""
        if hello.database_id and self.database_id and hello.database_id != self.database_id:
            self._other_database(peer, hello)
            return
        queues = tuple(dict.fromkeys(hello.queues)) or ("default",)
        tasks = frozenset(hello.tasks)
        self.asked.said_hello(peer)
        worker = self.workers.get(peer)
        # A stuck handler's slot (``busy``) is offered when the worker frees it.
        fresh = max(0, hello.slots - hello.busy)
        added_slots = fresh if worker is None else max(0, hello.slots - worker.slots)
        if worker is None:
            worker = self.workers[peer] = WorkerConn(peer, hello.name, hello.slots, queues, tasks)
            log.info(
                "worker %s joined: %d slot(s) on %s", hello.name, hello.slots, ",".join(queues)
            )
            self._worker_event(worker, "joined")
        else:
            log.info(
                "worker %s said hello again: kept, with its %d lease(s)",
                hello.name,
                len(worker.running),
            )
            worker.name, worker.queues, worker.tasks = hello.name, queues, tasks
            worker.slots = hello.slots
        worker.prefetch = min(hello.prefetch, hello.slots - 1)  # at least one slot runs jobs
        worker.lease_basis = max(worker.lease_basis, hello.sent_at)
        worker.last_seen = time.monotonic()
        taking = worker.state in ("alive", "suspect")  # not dead, not draining
        leased_as = self._leased_as(peer, hello.name)
        self._names(worker, available=taking)
        welcome = wire.Welcome(
            wire.PROTOCOL_VERSION, self.heartbeat_interval, self.instance, self.lease,
            self.term, self.database_id, self.database,
        )  # fmt: skip
        self._send(peer, welcome)
        claims = hello.leases[: CLAIMS_PER_SLOT * hello.slots]
        if len(claims) < len(hello.leases):
            self._warn(
                "worker %s claims %d leases with %d slot(s); adopting the first %d",
                hello.name,
                len(hello.leases),
                hello.slots,
                len(claims),
            )
        new: list[tuple[int, int]] = []
        for job_id, token in claims:
            held = worker.running.get(job_id)
            if held is None:
                new.append((job_id, token))
            elif held != token:  # it holds a newer (or older) lease on that job than it says
                self._send(peer, wire.StopJob(job_id, token, "stale lease"))
        if new:
            # Jobs it kept running (or finished, result not yet acknowledged) across a
            # reconnect or a scheduler restart: held provisionally while the scheduler
            # decides which are still its own; their slots stay taken.
            worker.claim(new)
            self.scheduler.tell(Adopt(peer, leased_as, new))
        declared = [limit for limit in hello.limits if limit[0] in tasks]
        if declared:  # ahead of its credit: no job of those tasks starts unlimited
            self.strategy.tell(DeclaredLimits(declared))
        if taking:
            # A first hello offers every slot not taken; a repeated one adds nothing (its
            # credits are with the strategy already) unless it announces more slots.
            credit = self._credit(worker, added_slots)
            self.strategy.tell(
                credit or WorkerCredit(peer, worker.name, queues, worker.slots, 0, tasks)
            )

    def _other_database(self, peer: bytes, hello: wire.WorkerHello) -> None:
        """Refuse a worker whose leases and results come from another database: the same
        job ids and tokens here are other jobs. It is not connected: it finds the
        schedulers of its own database, or, told this, forgets its old work and joins."""
        self.refused_hellos += 1
        self._warn(
            "refused worker %s: it comes from another database (%s) than this one (%s)",
            hello.name,
            hello.database_id,
            self.database_id,
        )
        text = (
            f"this scheduler serves {self.database} (database {self.database_id}); the "
            f"worker's leases and results are from database {hello.database_id}"
        )
        self._send(peer, wire.ErrorReply("other_database", text))

    def _adopted(self, verdict: Adopted) -> None:
        worker = self.workers.get(verdict.peer)
        if worker is None:
            return
        for job_id, _ in verdict.accepted:
            worker.adopting.discard(job_id)
        # Started before the claim: counting from now only makes the backstop later.
        worker.watch(verdict.timeouts, verdict.accepted, self.lease + self.grace)
        ended = 0
        for job_id, token in verdict.refused:
            ended += worker.end(job_id, token)
            self._send(verdict.peer, wire.StopJob(job_id, token, "lease no longer valid"))
        self._released(worker, ended)

    # ---------------------------------------------------------------- heartbeats

    def _heartbeat(self, peer: bytes, beat: wire.Heartbeat) -> None:
        """Renew the worker's leases (the ack is what its self-fencing clock waits for)
        and reconcile them with the granted ones."""
        worker = self.workers.get(peer)
        if worker is None:
            self._unknown(peer)
            return
        if len(beat.leases) > worker.slots:
            # More than it can hold: refused as one error, so one frame costs one reply.
            self.refused_heartbeats += 1
            self._warn(
                "refused heartbeat from worker %s: %d leases listed, %d slot(s)",
                worker.name,
                len(beat.leases),
                worker.slots,
            )
            text = (
                f"heartbeat lists {len(beat.leases)} leases; this worker has {worker.slots} slot(s)"
            )
            self._send(peer, wire.ErrorReply("invalid", text))
            return
        worker.last_seen = time.monotonic()
        worker.lease_basis = max(worker.lease_basis, beat.sent_at)
        self._send(peer, wire.HeartbeatAck(beat.sent_at))
        not_held, not_granted = worker.reconcile(beat)
        if worker.stopping and (stopped := worker.confirmed(beat)):
            self.scheduler.tell(StopsConfirmed(stopped))
        if not_granted:
            self.refused_leases += len(not_granted)
            self._warn(
                "worker %s claims %d lease(s) not granted to it (e.g. job %d token %d): stopped",
                worker.name,
                len(not_granted),
                *not_granted[0],
            )
            for job_id, token in not_granted:
                self._send(peer, wire.StopJob(job_id, token, "stale lease"))
        if not_held:
            self.unheld_leases += len(not_held)
            text = "worker %s does not hold %d lease(s) granted to it; re-queueing them"
            log.info(text, worker.name, len(not_held))
            self._end(worker, not_held, "unheld", "the worker never started it")
            if worker.state == "alive":  # it has these slots free: it never used them
                credit = self._credit(worker, len(not_held))
                if credit is not None:
                    self._credits_out.append(credit)
        if beat.waiting:  # prefetched, not started: their timeouts have not begun
            worker.postpone(beat.waiting[: worker.slots], self.lease + self.grace)
        overdue = worker.overdue(time.monotonic())
        if overdue:
            for job_id, token in overdue:
                self._send(peer, wire.StopJob(job_id, token, "no result by its timeout"))
            reason = "no result within the job's timeout plus the lease time and grace"
            self._end(worker, overdue, "lost", reason)

    # ------------------------------------------------------------------- results

    def _results(self, peer: bytes, message: wire.Results) -> None:
        worker = self.workers.get(peer)
        if worker is None:
            self._unknown(peer)
            return
        worker.last_seen = time.monotonic()
        results = message.results
        for result in results:
            worker.end(result.job_id, result.token)  # a stale one ends no lease
        if worker.stopping and (  # a revoked lease's result: its handler has ended
            ended := [r.job_id for r in results if worker.result_for(r.job_id, r.token)]
        ):
            self.scheduler.tell(StopsConfirmed(ended))
        if results:
            self._results_out.append((peer, worker.name, results))
        # -1: one slot per result; otherwise exactly that many (a handler still busy
        # after its result returns its slot later, in a frame of its own).
        freed = len(results) if message.credits < 0 else message.credits
        if worker.state not in ("alive", "suspect"):
            worker.freed_while_away(freed)
        elif credit := self._credit(worker, freed, claimed=True):
            self._credits_out.append(credit)

    def on_idle(self) -> None:
        self._flush_results()

    def _assign(self, leases: list[tuple[bytes, wire.Assignment]]) -> None:
        per_worker: defaultdict[bytes, list[wire.Assignment]] = defaultdict(list)
        for peer, assignment in leases:
            per_worker[peer].append(assignment)
        for peer, assignments in per_worker.items():
            worker = self.workers.get(peer)
            if worker is None:
                # Gone between pick and commit: the jobs never left; re-queue them now.
                unsent = [(a.job_id, a.token) for a in assignments]
                self.scheduler.tell(LeasesEnded(peer, "?", unsent, "unheld", "worker gone"))
                continue
            frames, oversize = worker.assign(assignments, self.lease + self.grace)
            for frame in frames:
                self._send(peer, frame)
            if oversize:
                unsendable = [(a.job_id, a.token) for a in oversize]
                why = "its assignment (arguments and parents' results) exceeds the frame limit"
                self.scheduler.tell(LeasesEnded(peer, worker.name, unsendable, "fatal", why))
                credit = self._credit(worker, len(oversize))
                if credit is not None and worker.state == "alive":
                    self.strategy.tell(WorkerCredits([credit]))

    # -------------------------------------------------------------------- health

    def _health(self, peer: bytes, state: str, silent_for: float) -> None:
        worker = self.workers.get(peer)
        if worker is None or (worker.state == "draining" and state != "expired"):
            return
        previous, worker.state = worker.state, state
        self._worker_event(worker, "left" if state == "expired" else state)
        log.log(
            logging.INFO if state == "alive" else logging.WARNING,
            "worker %s is %s (silent for %.1fs)",
            worker.name,
            state,
            silent_for,
        )
        if state == "expired":
            self._drop(peer, "expired", EXPIRED)
        elif state == "dead" and previous != "dead":
            self._unavailable(worker)
        elif state == "alive" and previous == "dead":
            credit = self._credit(worker, worker.slots)
            self.strategy.tell(
                credit
                or WorkerCredit(peer, worker.name, worker.queues, worker.slots, 0, worker.tasks)
            )
            self._names(worker, available=True)

    def _progress(self, peer: bytes, updates: list[tuple[int, int, float, str]]) -> None:
        """Keep the latest progress of running jobs; a stale token's report is refused."""
        worker = self.workers.get(peer)
        if worker is None:
            return
        recorded = worker.record_progress(updates, time.monotonic())
        if recorded is None:
            self.dropped_progress += len(updates)  # the worker ignored its own rate limit
            return
        events, refused = recorded
        if refused:
            self.refused_progress += refused
            self._warn("refused %d progress report(s) from %s (stale token)", refused, worker.name)
        if events:
            self.events.tell(Publish(events))
