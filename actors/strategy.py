"""The strategy actor: owns the ready queue(s) and the workers' free slots, and matches them.

Ready jobs arrive from the scheduler (``Enqueue``); free slots arrive from the
dispatcher as credits (``WorkerCredit``). Whenever both exist it proposes
assignments (``Picked``) to the scheduler, which makes them real with a
compare-and-swap, or gives a slot back (``ReturnCredit``) when the job is no
longer QUEUED. A worker is never proposed more jobs than its credit. Which job
and which worker is the pluggable ``strategies.Strategy``'s decision.
"""

from __future__ import annotations

from typing import Any

from actors.messages import (
    Enqueue,
    Picked,
    ReturnCredit,
    StatusPart,
    WorkerCredit,
    WorkerCredits,
    WorkerGone,
)
from actors.runtime import Actor
from strategies import Strategy, WorkerSlots
from transport import protocol as wire


class StrategyActor(Actor):
    def __init__(self, strategy: Strategy) -> None:
        super().__init__("strategy")
        self.strategy = strategy
        self.workers: dict[bytes, WorkerSlots] = {}
        self._joined = 0
        self.scheduler: Actor
        self.dispatcher: Actor

    async def handle(self, message: Any) -> None:
        match message:
            case Enqueue(jobs=jobs):
                push = self.strategy.push
                for job in jobs:
                    push(job)
            case WorkerCredits(grants=grants):
                for grant in grants:
                    self._credit(grant)
            case WorkerCredit():
                self._credit(message)
            case ReturnCredit(peer=peer, credit=credit):
                worker = self.workers.get(peer)
                if worker is not None:
                    worker.credit = min(worker.slots, worker.credit + credit)
            case WorkerGone(peer=peer):
                self.workers.pop(peer, None)
            case StatusPart(peer=peer, request_id=rid, fields=fields):
                views = {
                    name: wire.QueueView(sum(b), *b) for name, b in self.strategy.bands().items()
                }
                self.dispatcher.tell(StatusPart(peer, rid, {**fields, "queues": views}))
            case _:
                raise TypeError(f"strategy got an unexpected message: {message!r}")

    def _credit(self, grant: WorkerCredit) -> None:
        worker = self.workers.get(grant.peer)
        if worker is None:
            self._joined += 1
            worker = WorkerSlots(grant.peer, grant.name, grant.queues, grant.slots, 0, self._joined)
            self.workers[grant.peer] = worker
        worker.credit = min(worker.slots, worker.credit + grant.credit)

    def on_idle(self) -> None:
        # Match once per burst of messages, when the runtime has emptied the mailbox,
        # whatever came last (a metrics tick included), so no wake-up can be lost.
        self._match()

    def _match(self) -> None:
        """Hand ready jobs to free slots, in the strategy's order, in one Picked batch."""
        strategy = self.strategy
        if not len(strategy):
            return
        picks: list[tuple[int, bytes]] = []
        hungry = [w for w in self.workers.values() if w.credit > 0]
        while hungry and len(strategy):
            worker = strategy.next_worker(hungry)
            for _ in range(max(1, min(worker.credit, strategy.per_turn(worker)))):
                job = strategy.pop(worker.queues)
                if job is None:
                    hungry.remove(worker)  # nothing left in its queues
                    break
                worker.credit -= 1
                picks.append((job.job_id, worker.peer))
            if worker.credit == 0 and worker in hungry:
                hungry.remove(worker)
        if picks:
            self.scheduler.tell(Picked(picks))

    def metrics(self) -> dict[str, Any]:
        return {
            "depth": self.strategy.depth(),
            "workers_with_free_slots": sum(1 for w in self.workers.values() if w.credit),
        }
