"""What a client waits for: requests in flight (``InFlight``) and waits for jobs to end
(``Waiting``), and which requests are safe to send twice (``repeatable``). Plain
bookkeeping; ``actors.client.connection`` sends, reads and keeps time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from transport import protocol as wire


@dataclass
class Waiting:
    remaining: set[int]
    outcomes: dict[int, wire.JobOutcome] = field(default_factory=dict)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    error: Exception | None = None
    # False while the job ids are still unknown (a wait riding on a Submit): outcomes
    # may be recorded, but the wait cannot be complete before the Submitted reply.
    armed: bool = True
    job_ids: list[int] = field(default_factory=list)  # the Submitted reply's, once armed

    def add(self, outcomes: Iterable[wire.JobOutcome]) -> None:
        for outcome in outcomes:
            self.outcomes[outcome.job_id] = outcome
            self.remaining.discard(outcome.job_id)
        if self.armed and not self.remaining:
            self.done.set()

    def arm(self, job_ids: list[int]) -> None:
        self.job_ids = job_ids
        self.remaining = set(job_ids) - self.outcomes.keys()
        self.armed = True
        self.add(())

    def fail(self, error: Exception) -> None:
        self.error = error
        self.done.set()


@dataclass
class InFlight:
    """A request sent and not yet answered."""

    message: wire.Message
    sent_at: float
    fail: Callable[[Exception], None]
    # Sent again after a hello_first reply: it reached the scheduler that sent that reply.
    resent: bool = False
    # A standby answered it (NotLeader): nothing was done, so it may be sent to the leader.
    refused: bool = False


def repeatable(message: wire.Message) -> bool:
    """Whether sending ``message`` twice has the effect of sending it once."""
    match message:
        case wire.Submit(jobs=jobs):
            return all(spec.idempotency_key for spec in jobs)
        case wire.SubmitWorkflow(idempotency_key=key):
            return key is not None
        case wire.GetStatus() | wire.GetJob() | wire.ListJobs() | wire.GetWorkflow():
            return True
        case wire.CancelJobs():
            return True
    return False


def describe(rid: int, message: wire.Message) -> str:
    return f"request {rid} ({type(message).__name__})"
