"""The dispatcher actor: owns worker connections and the leases in flight to each.

Credit-based pull: a worker's hello announces its slots, and every result it
returns frees one; the dispatcher passes these credits to the strategy actor,
so a worker is never sent more jobs than it has free slots. Committed leases
arrive from the scheduler (``Leased``) and go out as one ``Assign`` frame per
worker. Results go to the scheduler, which checks their fencing tokens.

Health comes from the heartbeat monitor: a ``dead`` worker gets no new work;
an ``expired`` one (silent for lease + grace) is forgotten and its leases are
handed back to the scheduler for reclaim.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from actors.messages import (
    Adopt,
    Adopted,
    Forget,
    FromWorker,
    Leased,
    PeerUnreachable,
    Publish,
    RevokeLease,
    Send,
    Silent,
    StatusPart,
    WorkerCredit,
    WorkerCredits,
    WorkerGone,
    WorkerLost,
    WorkerNames,
    WorkerResults,
)
from actors.runtime import Actor
from transport import protocol as wire

log = logging.getLogger("corral.dispatcher")

# A worker sends progress at most 4 times a second (it coalesces); frames closer than
# this are dropped here, so a misbehaving worker cannot flood the scheduler.
PROGRESS_MIN_INTERVAL_S = 0.1


@dataclass(slots=True)
class WorkerConn:
    peer: bytes
    name: str
    slots: int
    queues: tuple[str, ...]
    state: str = "alive"
    running: dict[int, int] = field(default_factory=dict)  # job id -> token
    adopting: bool = False  # its claimed leases are being checked after a reconnect
    progress: dict[int, tuple[float, str]] = field(default_factory=dict)  # job -> latest report
    progress_at: float = 0.0
    last_seen: float = field(default_factory=time.monotonic)


class Dispatcher(Actor):
    def __init__(
        self, strategy_name: str, heartbeat_interval: float, instance: str, lease: float
    ) -> None:
        super().__init__("dispatcher")
        self.instance = instance
        self.lease = lease
        self.strategy_name = strategy_name
        self.heartbeat_interval = heartbeat_interval
        self.workers: dict[bytes, WorkerConn] = {}
        self.refused_leases = 0  # heartbeats claiming a lease the worker does not hold
        self.refused_progress = 0  # progress reports under a stale token
        self.dropped_progress = 0
        self._results_out: list[tuple[bytes, str, list[wire.JobResult]]] = []
        self._credits_out: list[WorkerCredit] = []
        self.gateway: Actor
        self.scheduler: Actor
        self.strategy: Actor
        self.heartbeat: Actor
        self.events: Actor

    async def handle(self, message: Any) -> None:
        if isinstance(message, FromWorker) and isinstance(message.message, wire.Results):
            self._results(message.peer, message.message.results)
            return
        # Anything else this actor says must follow the results and credits gathered so
        # far (a worker's credit must not reach the strategy after its WorkerGone).
        self._flush_results()
        match message:
            case Leased(leases=leases):
                self._assign(leases)
            case FromWorker(peer=peer, message=wire.Heartbeat() as beat):
                self._heartbeat(peer, beat)
            case Adopted(peer=peer, accepted=accepted, refused=refused):
                self._adopted(peer, accepted, refused)
            case RevokeLease(peer=peer, job_id=job_id, token=token, reason=reason):
                worker = self.workers.get(peer)
                if worker is not None and worker.running.get(job_id) == token:
                    del worker.running[job_id]
                self._send(peer, wire.StopJob(job_id, token, reason))
            case FromWorker(peer=peer, message=wire.WorkerHello() as hello):
                self._hello(peer, hello)
            case FromWorker(peer=peer, message=wire.Drain()):
                worker = self.workers.get(peer)
                if worker is not None and worker.state != "draining":
                    worker.state = "draining"
                    self.strategy.tell(WorkerGone(peer))
            case FromWorker(peer=peer, message=wire.Goodbye()):
                self._drop(peer, "said goodbye")
            case Silent(peer=peer, state=state, silent_for=silent_for):
                self._health(peer, state, silent_for)
            case PeerUnreachable(peer=peer):
                worker = self.workers.get(peer)
                if worker is not None and worker.state == "alive":
                    worker.state = "dead"
                    self.strategy.tell(WorkerGone(peer))
            case StatusPart(peer=peer, request_id=rid, fields=fields):
                self._send(peer, wire.StatusReply(rid, self.status(fields)))
            case FromWorker(peer=peer, message=wire.Progress(updates=updates)):
                self._progress(peer, updates)
            case _:
                raise TypeError(f"dispatcher got an unexpected message: {message!r}")

    def _send(self, peer: bytes, message: wire.Message) -> None:
        self.gateway.tell(Send(peer, message))

    def _hello(self, peer: bytes, hello: wire.WorkerHello) -> None:
        queues = tuple(dict.fromkeys(hello.queues)) or ("default",)
        worker = WorkerConn(peer, hello.name, hello.slots, queues)
        if peer in self.workers:
            self._drop(peer, "said hello again")
        self.workers[peer] = worker
        log.info("worker %s joined: %d slot(s) on %s", hello.name, hello.slots, ",".join(queues))
        self.scheduler.tell(WorkerNames(peer, hello.name))
        welcome = wire.Welcome(
            wire.PROTOCOL_VERSION, self.heartbeat_interval, self.instance, self.lease
        )
        self._send(peer, welcome)
        self._worker_event(worker, "joined")
        if hello.leases:
            # Jobs it kept running (or finished, result not yet acknowledged) across a
            # reconnect or a scheduler restart: held provisionally while the scheduler
            # decides which are still its own; their slots stay taken.
            worker.adopting = True
            worker.running.update(hello.leases)
            self.scheduler.tell(Adopt(peer, hello.name, hello.leases))
        free = max(0, hello.slots - len(hello.leases))
        self.strategy.tell(WorkerCredit(peer, hello.name, queues, hello.slots, free))

    def _adopted(
        self, peer: bytes, accepted: list[tuple[int, int]], refused: list[tuple[int, int]]
    ) -> None:
        worker = self.workers.get(peer)
        if worker is None:
            return
        worker.adopting = False
        for job_id, token in refused:
            if worker.running.get(job_id) == token:
                del worker.running[job_id]
            self._send(peer, wire.StopJob(job_id, token, "lease no longer valid"))

    def _heartbeat(self, peer: bytes, beat: wire.Heartbeat) -> None:
        """Renew the worker's leases (the ack is what its self-fencing clock waits for)."""
        worker = self.workers.get(peer)
        if worker is None:
            self._send(peer, wire.ErrorReply("hello_first", "unknown worker: say hello again"))
            return
        worker.last_seen = time.monotonic()
        self._send(peer, wire.HeartbeatAck(beat.sent_at))
        if worker.adopting:
            return
        for job_id, token in beat.leases:
            if worker.running.get(job_id) != token:
                log.warning(
                    "refused stale lease: worker %s claims job %d under token %d; stopping it",
                    worker.name,
                    job_id,
                    token,
                )
                self.refused_leases += 1
                self._send(peer, wire.StopJob(job_id, token, "stale lease"))

    def _results(self, peer: bytes, results: list[wire.JobResult]) -> None:
        worker = self.workers.get(peer)
        if worker is None:
            self._send(peer, wire.ErrorReply("hello_first", "unknown worker: say hello again"))
            return
        worker.last_seen = time.monotonic()
        for result in results:
            if worker.running.get(result.job_id) == result.token:  # a stale one ends no lease
                del worker.running[result.job_id]
                worker.progress.pop(result.job_id, None)
        self._results_out.append((peer, worker.name, results))
        if worker.state in ("alive", "suspect") and results:
            self._credits_out.append(
                WorkerCredit(peer, worker.name, worker.queues, worker.slots, len(results))
            )

    def on_idle(self) -> None:
        self._flush_results()

    def _flush_results(self) -> None:
        """Pass on the results and freed slots of every worker heard this turn, as one
        message each: with many workers, the scheduler then writes once per turn, not
        once per worker."""
        if self._results_out:
            self.scheduler.tell(WorkerResults(self._results_out))
            self._results_out = []
        if self._credits_out:
            self.strategy.tell(WorkerCredits(self._credits_out))
            self._credits_out = []

    def _assign(self, leases: list[tuple[bytes, wire.Assignment]]) -> None:
        per_worker: defaultdict[bytes, list[wire.Assignment]] = defaultdict(list)
        for peer, assignment in leases:
            per_worker[peer].append(assignment)
        for peer, assignments in per_worker.items():
            worker = self.workers.get(peer)
            if worker is None:
                # Gone between pick and commit: the jobs never left; reclaim them now.
                self.scheduler.tell(WorkerLost(peer, "?", [a.job_id for a in assignments]))
                continue
            for a in assignments:
                worker.running[a.job_id] = a.token
            self._send(peer, wire.Assign(assignments))

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
            self._drop(peer, "expired")
        elif state == "dead" and previous != "dead":
            self.strategy.tell(WorkerGone(peer))
        elif state == "alive" and previous == "dead":
            free = worker.slots - len(worker.running)
            self.strategy.tell(WorkerCredit(peer, worker.name, worker.queues, worker.slots, free))

    def _drop(self, peer: bytes, why: str) -> None:
        worker = self.workers.pop(peer, None)
        if worker is None:
            return
        log.info("worker %s left (%s); reclaiming %d job(s)", worker.name, why, len(worker.running))
        if why != "expired":
            self._worker_event(worker, "left")
        self.strategy.tell(WorkerGone(peer))
        self.heartbeat.tell(Forget(peer))
        if worker.running:
            self.scheduler.tell(WorkerLost(peer, worker.name, list(worker.running)))

    def _worker_event(self, worker: WorkerConn, state: str) -> None:
        self.events.tell(
            Publish([("worker", 0, state, ",".join(worker.queues), worker.name, 0, -1.0, "")])
        )

    def _progress(self, peer: bytes, updates: list[tuple[int, int, float, str]]) -> None:
        """Keep the latest progress of running jobs; a stale token's report is refused."""
        worker = self.workers.get(peer)
        if worker is None:
            return
        now = time.monotonic()
        if now - worker.progress_at < PROGRESS_MIN_INTERVAL_S:
            self.dropped_progress += len(updates)  # the worker ignored its own rate limit
            return
        worker.progress_at = now
        events = []
        for job_id, token, fraction, message in updates:
            if worker.running.get(job_id) != token:
                self.refused_progress += 1
                log.warning("refused progress for job %d under stale token %d", job_id, token)
                continue
            worker.progress[job_id] = (fraction, message)
            events.append(
                ("progress", job_id, "RUNNING", "", worker.name, token, fraction, message)
            )
        if events:
            self.events.tell(Publish(events))

    def status(self, fields: dict[str, Any]) -> wire.StatusView:
        now = time.monotonic()
        workers = []
        for w in self.workers.values():
            jobs = []
            for job_id, token in w.running.items():
                fraction, message = w.progress.get(job_id, (None, ""))
                jobs.append(wire.RunningView(job_id, token, fraction, message))
            workers.append(
                wire.WorkerView(
                    w.name,
                    w.state,
                    w.slots,
                    len(w.running),
                    list(w.queues),
                    round(now - w.last_seen, 3),
                    jobs,
                )
            )
        counters = {
            **fields.pop("counters", {}),
            "refused_leases": self.refused_leases,
            "refused_progress": self.refused_progress,
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
        }
