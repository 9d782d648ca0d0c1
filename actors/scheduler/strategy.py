"""The strategy actor: owns the ready queue(s) and the workers' free slots, and matches them.

Ready jobs arrive from the scheduler (``Enqueue``); free slots arrive from the
dispatcher as credits (``WorkerCredit``). Whenever both exist it proposes
assignments (``Picked``) to the scheduler, which makes them real with a
compare-and-swap, or gives a slot back (``ReturnCredit``) when the job is no
longer QUEUED. A worker is never proposed more jobs than its credit, nor a job
whose task it did not announce (a worker that announced no tasks may get any).
Which job and which worker is the pluggable ``strategies.Strategy``'s decision,
and its indexes keep each assignment O(log n) however many workers and queues exist.

Concurrency keys and rate limits (``strategies.gates``) hold the jobs that may not start
yet: the scheduler reports keyed jobs that left RUNNING (``KeysFreed``) and the limits
(``SetLimits``); this actor keeps ONE timer, for the earliest token a held job waits for.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from actors.runtime import SLICE, Actor, in_slices
from actors.scheduler.messages import (
    DeclaredLimits,
    Enqueue,
    GateTick,
    KeysFreed,
    Picked,
    ReturnCredit,
    RunningKeyed,
    SetLimits,
    StatusPart,
    WorkerCredit,
    WorkerCredits,
    WorkerGone,
)
from strategies import Strategy
from strategies.gates import Gates
from transport import protocol as wire

MIN_GATE_WAIT_S = 0.001


class StrategyActor(Actor):
    def __init__(self, strategy: Strategy) -> None:
        super().__init__("strategy")
        self.strategy = strategy
        self.scheduler: Actor
        self.dispatcher: Actor
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0  # loop time it fires at

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
            case ReturnCredit(peer=peer, credit=credit, job_ids=ids):
                self.strategy.give_back(peer, credit)
                if ids:
                    self.strategy.release(self.strategy.gates.freed(ids))
            case KeysFreed(job_ids=ids):
                self.strategy.release(self.strategy.gates.freed(ids))
            case GateTick():
                self._timer = None
                self.strategy.release(self.strategy.gates.due())
            case RunningKeyed(jobs=jobs):
                self.strategy.gates.running(jobs)
            case SetLimits(limits=limits, removed=removed, declared=declared):
                gates = self.strategy.gates
                for name in removed:
                    self.strategy.release(gates.remove_limit(name))
                for name, count, period, burst, tat in limits:
                    gates.set_limit(name, count, period, burst, tat, name in declared)
            case DeclaredLimits(limits=limits):
                gates = self.strategy.gates
                applied = [limit for limit in limits if gates.declare(*limit)]
                if applied:  # before any pick they gate: the scheduler keeps them
                    self.scheduler.tell(DeclaredLimits(applied))
            case WorkerGone(peer=peer):
                self.strategy.remove_worker(peer)
            case StatusPart(peer=peer, request_id=rid, fields=fields):
                shown = limits_status(self.strategy.gates)
                self.dispatcher.tell(
                    StatusPart(peer, rid, {**fields, "queues": self.queues(), **shown})
                )
            case _:
                raise TypeError(f"strategy got an unexpected message: {message!r}")

    def _credit(self, grant: WorkerCredit) -> None:
        self.strategy.credit(
            grant.peer, grant.name, grant.queues, grant.tasks, grant.slots, grant.credit
        )

    def queues(self) -> dict[str, wire.QueueView]:
        """The status's view of the ready queues, with the jobs no connected worker may run."""
        waiting = self.strategy.waiting_for_worker()
        oldest = self.strategy.oldest()
        now = time.monotonic()  # ReadyJob.enqueued_at's clock
        views: dict[str, wire.QueueView] = {}
        for name, b in self.strategy.bands().items():
            first = oldest.get(name)
            views[name] = wire.QueueView(
                sum(b),
                *b,
                waiting_for_worker=waiting.get(name, 0),
                oldest_job=first.job_id if first else 0,
                oldest_s=round(max(0.0, now - first.enqueued_at), 3) if first else 0.0,
            )
        return views

    def on_idle(self) -> None:
        # Match once per burst of messages, when the runtime has emptied the mailbox,
        # whatever came last (a metrics tick included), so no wake-up can be lost.
        strategy = self.strategy
        gates = strategy.gates
        now = gates.clock()  # every token of this match is taken now: the picks' start
        picks = strategy.match(now)
        if gates.held or gates.changed:
            states = gates.take_changed()
            if picks or states:
                self.scheduler.tell(Picked(picks, states, now if states else 0.0))
            self._arm_timer()
        elif picks:
            self.scheduler.tell(Picked(picks))

    def _arm_timer(self) -> None:
        """ONE timer, for the earliest token a held job waits for, never one per job."""
        wait = self.strategy.gates.next_due()
        if wait is None:
            return
        # Never a timer of 0: had the gates ever said a token is due without releasing a
        # job for it, a zero timer would spin the loop; a millisecond costs nothing.
        wait = max(wait, MIN_GATE_WAIT_S)
        loop = asyncio.get_running_loop()
        at = loop.time() + wait
        if self._timer is not None:
            if self._timer_at <= at:
                return
            self._timer.cancel()
        self._timer_at = at
        self._timer = loop.call_later(wait, self.tell, GateTick())

    def metrics(self) -> dict[str, Any]:
        return {
            "depth": self.strategy.depth(),
            "held_at_limits": self.strategy.gates.held,
            "workers_with_free_slots": self.strategy.workers.hungry(),
        }


def limits_status(gates: Gates) -> dict[str, Any]:
    """The status's concurrency keys at their limit (or holding jobs) and rate limits."""
    keys = [
        wire.GateView(g.name, g.running, g.max, len(g.held))
        for g in gates.gates.values()
        if g.max and (g.full() or g.held)
    ]
    limits = [
        wire.LimitView(
            g.name, g.bucket.count, g.bucket.period, g.bucket.burst, len(g.held), g.declared
        )
        for g in gates.rated.values()
        if g.bucket is not None
    ]
    return {
        "keys": sorted(keys, key=lambda k: k.key),
        "limits": sorted(limits, key=lambda x: x.name),
    }
