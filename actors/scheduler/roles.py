"""What each role may send (issue 16), checked by the gateway on every frame, by the
identity ZeroMQ authenticated (``transport.identity``), never by a name the peer claims.

- a worker key: the worker's conversation (hello, heartbeats, progress, results, drain,
  goodbye); its results and progress count only for leases granted to that key (a lease
  is held by a peer, and a peer id carries its key);
- a client key: the client's requests: submit, wait, watch, read, cancel;
- an admin key: everything, also requeueing dead letters and setting or removing rate
  limits (``corral limit set | remove``).

A peer of a scheduler without keys has no identity and may send anything, as before.
Still to come: a client reading, waiting for and cancelling only the jobs it submitted
(the jobs need their submitter's key stored first).
"""

from __future__ import annotations

from transport import Identity
from transport import protocol as wire

WORKER = (wire.WorkerHello, wire.Heartbeat, wire.Progress, wire.Results, wire.Drain, wire.Goodbye)
CLIENT = (
    wire.ClientHello,
    wire.Submit,
    wire.Wait,
    wire.GetStatus,
    wire.GetJob,
    wire.ListJobs,
    wire.CancelJobs,
    wire.SubmitWorkflow,
    wire.GetWorkflow,
    wire.Subscribe,
    wire.EventsAck,
    wire.Unsubscribe,
    wire.ListLimits,
    wire.ListSchedules,  # a client key sees the schedules, not their (the admin's) jobs
)
ALLOWED: dict[str, tuple[type[wire.Message], ...]] = {
    "worker": WORKER,
    "client": CLIENT,
    "admin": (
        *WORKER,
        *CLIENT,
        wire.Requeue,
        wire.SetLimit,
        wire.RemoveLimit,
        wire.AddSchedule,
        wire.ChangeSchedule,
    ),
}


def refusal(who: Identity | None, message: wire.Message) -> str | None:
    """Why ``who`` may not send ``message``, or None if it may."""
    if who is None or isinstance(message, ALLOWED.get(who.role, ())):
        return None
    return f"a {who.role} key may not send {type(message).__name__}"
