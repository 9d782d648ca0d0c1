"""The strategy actor: owns the ready queue(s) and the workers' free slots, and matches them.

Ready jobs arrive from the scheduler (``Enqueue``); free slots arrive from the
dispatcher as credits (``WorkerCredit``). Whenever both exist it proposes
assignments (``Picked``) to the scheduler, which makes them real with a
compare-and-swap, or gives a slot back (``ReturnCredit``) when the job is no
longer QUEUED. A worker is never proposed more jobs than its credit, nor a job
whose task it did not announce (a worker that announced no tasks may get any).
Which job and which worker is the pluggable ``strategies.Strategy``'s decision,
and its indexes keep each assignment O(log n) however many workers and queues exist.
"""

from __future__ import annotations

from typing import Any

from actors.runtime import SLICE, Actor, in_slices
from actors.scheduler.messages import (
    Enqueue,
    Picked,
    ReturnCredit,
    StatusPart,
    WorkerCredit,
    WorkerCredits,
    WorkerGone,
)
from strategies import Strategy
from transport import protocol as wire


class StrategyActor(Actor):
    def __init__(self, strategy: Strategy) -> None:
        super().__init__("strategy")
        self.strategy = strategy
        self.scheduler: Actor
        self.dispatcher: Actor

    async def handle(self, message: Any) -> None:
        match message:
            case Enqueue(jobs=jobs) if len(jobs) <= SLICE:
                push = self.strategy.push
                for job in jobs:
                    push(job)
            case Enqueue(jobs=jobs):  # a new leader's whole backlog: see runtime.SLICE
                push = self.strategy.push
                async for part in in_slices(jobs):
                    for job in part:
                        push(job)
            case WorkerCredits(grants=grants):
                for grant in grants:
                    self._credit(grant)
            case WorkerCredit():
                self._credit(message)
            case ReturnCredit(peer=peer, credit=credit):
                self.strategy.give_back(peer, credit)
            case WorkerGone(peer=peer):
                self.strategy.remove_worker(peer)
            case StatusPart(peer=peer, request_id=rid, fields=fields):
                self.dispatcher.tell(StatusPart(peer, rid, {**fields, "queues": self.queues()}))
            case _:
                raise TypeError(f"strategy got an unexpected message: {message!r}")

    def _credit(self, grant: WorkerCredit) -> None:
        self.strategy.credit(
            grant.peer, grant.name, grant.queues, grant.tasks, grant.slots, grant.credit
        )

    def queues(self) -> dict[str, wire.QueueView]:
        """The status's view of the ready queues, with the jobs no connected worker may run."""
        waiting = self.strategy.waiting_for_worker()
        return {
            name: wire.QueueView(sum(b), *b, waiting_for_worker=waiting.get(name, 0))
            for name, b in self.strategy.bands().items()
        }

    def on_idle(self) -> None:
        # Match once per burst of messages, when the runtime has emptied the mailbox,
        # whatever came last (a metrics tick included), so no wake-up can be lost.
        picks = self.strategy.match()
        if picks:
            self.scheduler.tell(Picked(picks))

    def metrics(self) -> dict[str, Any]:
        return {
            "depth": self.strategy.depth(),
            "workers_with_free_slots": self.strategy.workers.hungry(),
        }
