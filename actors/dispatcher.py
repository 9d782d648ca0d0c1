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
    Forget,
    FromWorker,
    Leased,
    PeerUnreachable,
    Send,
    Silent,
    StatusPart,
    WorkerCredit,
    WorkerGone,
    WorkerLost,
    WorkerNames,
    WorkerResults,
)
from actors.runtime import Actor
from transport import protocol as wire

log = logging.getLogger("corral.dispatcher")


@dataclass(slots=True)
class WorkerConn:
    peer: bytes
    name: str
    slots: int
    queues: tuple[str, ...]
    state: str = "alive"
    running: dict[int, int] = field(default_factory=dict)  # job id -> token
    last_seen: float = field(default_factory=time.monotonic)


class Dispatcher(Actor):
    def __init__(self, strategy_name: str, heartbeat_interval: float, instance: str) -> None:
        super().__init__("dispatcher")
        self.instance = instance
        self.strategy_name = strategy_name
        self.heartbeat_interval = heartbeat_interval
        self.workers: dict[bytes, WorkerConn] = {}
        self.gateway: Actor
        self.scheduler: Actor
        self.strategy: Actor
        self.heartbeat: Actor

    async def handle(self, message: Any) -> None:
        match message:
            case FromWorker(peer=peer, message=wire.Results(results=results)):
                self._results(peer, results)
            case Leased(leases=leases):
                self._assign(leases)
            case FromWorker(peer=peer, message=wire.Heartbeat()):
                worker = self.workers.get(peer)
                if worker is None:
                    self._send(
                        peer, wire.ErrorReply("hello_first", "unknown worker: say hello again")
                    )
                else:
                    worker.last_seen = time.monotonic()
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
            case StatusPart(peer=peer, request_id=rid, jobs=jobs):
                self._send(peer, wire.StatusReply(rid, self.status(jobs)))
            case _:
                raise TypeError(f"dispatcher got an unexpected message: {message!r}")

    def _send(self, peer: bytes, message: wire.Message) -> None:
        self.gateway.tell(Send(peer, message))

    def _hello(self, peer: bytes, hello: wire.WorkerHello) -> None:
        queues = tuple(dict.fromkeys(hello.queues)) or ("default",)
        worker = WorkerConn(peer, hello.name, hello.slots, queues)
        old = self.workers.get(peer)
        if old is not None:
            self._drop(peer, "said hello again")
        self.workers[peer] = worker
        log.info(
            "worker %s joined with %d slot(s) on %s", hello.name, hello.slots, ",".join(queues)
        )
        self.scheduler.tell(WorkerNames(peer, hello.name))
        self._send(
            peer, wire.Welcome(wire.PROTOCOL_VERSION, self.heartbeat_interval, self.instance)
        )
        self.strategy.tell(WorkerCredit(peer, hello.name, queues, hello.slots, hello.slots))

    def _results(self, peer: bytes, results: list[wire.JobResult]) -> None:
        worker = self.workers.get(peer)
        if worker is None:
            self._send(peer, wire.ErrorReply("hello_first", "unknown worker: say hello again"))
            return
        worker.last_seen = time.monotonic()
        for result in results:
            worker.running.pop(result.job_id, None)
        self.scheduler.tell(WorkerResults(peer, worker.name, results))
        if worker.state in ("alive", "suspect") and results:
            self.strategy.tell(
                WorkerCredit(peer, worker.name, worker.queues, worker.slots, len(results))
            )

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
        self.strategy.tell(WorkerGone(peer))
        self.heartbeat.tell(Forget(peer))
        if worker.running:
            self.scheduler.tell(WorkerLost(peer, worker.name, list(worker.running)))

    def status(self, jobs: dict[str, int]) -> wire.StatusView:
        now = time.monotonic()
        workers = [
            wire.WorkerView(
                w.name,
                w.state,
                w.slots,
                len(w.running),
                list(w.queues),
                round(now - w.last_seen, 3),
            )
            for w in self.workers.values()
        ]
        return wire.StatusView(jobs, workers, self.strategy_name)
