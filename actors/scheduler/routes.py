"""Who tells whom what: the routes between the scheduler process's actors, in one place.

Every arrow is a ``tell`` of the messages named (``actors.scheduler.messages``; frames from
and to the network are ``transport.protocol``). ``connect`` below sets exactly these
references and no others, so an actor can only send along a route listed here.

    gateway    -> scheduler   FromClient (client requests), SubscriberCount (a Subscribe:
                              record events from now on)
    gateway    -> dispatcher  FromWorker (hello, results, heartbeats, progress, goodbye),
                              PeerUnreachable
    gateway    -> heartbeat   Seen (workers heard this turn)
    gateway    -> events      SubscriptionRequest, PeerUnreachable
    scheduler  -> store       Write (ops + effects), Read (typed reads)
    store      -> scheduler   Written (after COMMIT)
    scheduler  -> strategy    Enqueue (ready jobs), StatusPart, KeysFreed (keyed jobs that
                              left RUNNING, or whose cancelled handler has stopped)
    strategy   -> scheduler   Picked (proposed assignments)
    strategy   -> dispatcher  StatusPart
    scheduler  -> dispatcher  Leased (committed leases), RevokeLease, Adopted
    scheduler  -> strategy    ReturnCredit (a pick that lost its compare-and-swap)
    dispatcher -> scheduler   WorkerResults, WorkerLost, LeasesEnded, Adopt, WorkerNames,
                              StopsConfirmed (revoked leases whose handlers have stopped)
    dispatcher -> strategy    WorkerCredits, WorkerGone
    dispatcher -> heartbeat   Forget
    heartbeat  -> dispatcher  Silent (suspect, dead, alive again)
    scheduler  -> dag         Track, Finished, CheckWorkflow
    dag        -> scheduler   Release, Doom, WorkflowChecked
    scheduler, dispatcher -> events   Publish (committed happenings)
    events     -> scheduler   SubscriberCount
    scheduler, dispatcher, events -> gateway   Send (frames out)

The store commits in order and waits a few loop turns for its feeders (scheduler,
strategy) so a new job and its lease share a transaction.
"""

from __future__ import annotations

import msgspec

from actors.runtime import Actor
from actors.scheduler.dag import DagResolver
from actors.scheduler.dispatcher import Dispatcher
from actors.scheduler.events import EventHub
from actors.scheduler.gateway import Gateway
from actors.scheduler.heartbeat import HeartbeatMonitor
from actors.scheduler.scheduler import Scheduler
from actors.scheduler.store.actor import StoreActor
from actors.scheduler.strategy import StrategyActor


class Actors(msgspec.Struct):
    """The actors of one scheduler process. ``dag`` is a ``DagResolver`` or a stand-in for
    one in another process (``actors.scheduler.remote.RemoteActor``)."""

    store: StoreActor
    scheduler: Scheduler
    dag: Actor
    strategy: StrategyActor
    dispatcher: Dispatcher
    heartbeat: HeartbeatMonitor
    events: EventHub
    gateway: Gateway

    def all(self) -> tuple[Actor, ...]:
        """Every actor, in the order the system starts them (the gateway last: frames
        arrive only once everything that handles them runs)."""
        return (
            self.store,
            self.scheduler,
            self.dag,
            self.strategy,
            self.dispatcher,
            self.heartbeat,
            self.events,
            self.gateway,
        )


def connect(a: Actors) -> None:
    """Give each actor the references for its routes in the table above."""
    a.gateway.scheduler, a.gateway.dispatcher = a.scheduler, a.dispatcher
    a.gateway.heartbeat, a.gateway.events = a.heartbeat, a.events
    a.scheduler.connect(
        gateway=a.gateway,
        store=a.store,
        strategy=a.strategy,
        dispatcher=a.dispatcher,
        dag=a.dag,
    )
    a.scheduler.events = a.events
    a.store.feeders = (a.scheduler, a.strategy)
    a.strategy.scheduler, a.strategy.dispatcher = a.scheduler, a.dispatcher
    a.dispatcher.gateway, a.dispatcher.scheduler = a.gateway, a.scheduler
    a.dispatcher.strategy, a.dispatcher.heartbeat = a.strategy, a.heartbeat
    a.dispatcher.events = a.events
    a.heartbeat.dispatcher = a.dispatcher
    if isinstance(a.dag, DagResolver):
        a.dag.scheduler = a.scheduler
    a.events.gateway, a.events.scheduler = a.gateway, a.scheduler
