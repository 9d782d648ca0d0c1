"""Rate limits, for the scheduler actor: ``corral limit set | list | remove``, and the
limits tasks declare (``@task(rate_limit=...)``).

The scheduler keeps the limits' definitions (``SchedulerCore.limits``) and persists them;
the strategy actor holds their buckets and the jobs waiting for a token
(``strategies.gates``). A set or remove is acknowledged once it is committed; the strategy
hears of it at once (a limit that is applied a commit early only holds jobs back).
The buckets' states are committed with the leases that took their tokens
(``leases.lease``), so a restart or a failover resumes each bucket where it was: no free
burst after a restart, and no wait that the old leader would not have had either.

A task's declared limit comes with the hello of each worker that runs it: the strategy
applies it before that worker's first credit, unless an admin's limit of the name is in
force, and tells this actor, which keeps it (``declared``) unless an admin's limit of the
name has been set meanwhile. An admin's ``set`` replaces a declared limit and is never
replaced by one; ``remove`` deletes either, until a worker declaring it says hello again.
"""

from __future__ import annotations

from actors.scheduler.core import SchedulerCore
from actors.scheduler.effects import Effects
from actors.scheduler.messages import Send, SetLimits
from actors.scheduler.ops import Ops
from actors.scheduler.store.base import LimitRecord
from transport import protocol as wire


def handle(
    sched: SchedulerCore, peer: bytes, request: wire.SetLimit | wire.RemoveLimit | wire.ListLimits
) -> None:
    ops, effects = Ops(), Effects()
    match request:
        case wire.SetLimit(request_id=rid, name=name, count=count, period=period, burst=burst):
            ops.limits.append((name, (count, period, burst, False)))
            sched.limits[name] = wire.LimitView(name, count, period, burst)
            sched.strategy.tell(SetLimits([(name, count, period, burst, None)]))
        case wire.RemoveLimit(request_id=rid, name=name):
            if name not in sched.limits:
                shown = ", ".join(sorted(sched.limits)[:10]) or "none"
                text = f"no limit named {name!r} (limits: {shown}); `corral limit list` shows them"
                sched.send(peer, wire.ErrorReply("not_found", text, rid))
                return
            ops.limits.append((name, None))
            del sched.limits[name]
            sched.strategy.tell(SetLimits(removed=[name]))
        case wire.ListLimits(request_id=rid):
            pass
    reply = wire.LimitsReply(rid, [sched.limits[n] for n in sorted(sched.limits)])
    effects.sends.append(Send(peer, reply))
    sched.write(ops, effects)


def keep_declared(sched: SchedulerCore, declared: list[tuple[str, int, float, int]]) -> None:
    """Keep the limits tasks declared that the strategy applied, bar any name an admin's
    limit took meanwhile (the strategy hears of that one right after, and follows it)."""
    ops = Ops()
    for name, count, period, burst in declared:
        known = sched.limits.get(name)
        if known is not None and not known.declared:
            continue
        ops.limits.append((name, (count, period, burst, True)))
        sched.limits[name] = wire.LimitView(name, count, period, burst, declared=True)
    if ops.limits:
        sched.write(ops, Effects())


def recovered(sched: SchedulerCore, records: list[LimitRecord]) -> SetLimits:
    """The limits a starting scheduler read: its registry, and the strategy's buckets in
    the state the last commit left them."""
    for r in records:
        sched.limits[r.name] = wire.LimitView(r.name, r.count, r.period, r.burst, 0, r.declared)
    limits: list[tuple[str, int, float, int, float | None]] = [
        (r.name, r.count, r.period, r.burst, r.tat) for r in records
    ]
    return SetLimits(limits, declared=[r.name for r in records if r.declared])
