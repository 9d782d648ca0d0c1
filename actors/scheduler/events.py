"""The event hub actor: owns the subscriptions and streams committed events to them.

The scheduler publishes job transitions after they are committed, the dispatcher
worker health changes and job progress. A client subscribes over its ordinary
connection (``Subscribe``: everything, or one job) and receives ``Events``
frames. Delivery is credit-based: a subscriber may have ``WINDOW`` frames
unacknowledged, each of at most about ``FRAME_BYTES``; beyond that its events wait in a
bounded buffer, and when the buffer is full the oldest are dropped and counted (reported
to the subscriber in the next frame's ``dropped``, and in the metrics). The buffers share
one budget (``BUFFERED_BUDGET`` events: with many subscribers each may buffer less), so a
slow or stuck subscriber costs a bounded amount of memory, never slows scheduling, and a
thousand of them cost no more than the budget and their windows.

A key (a connection, without keys) holds at most ``max_per_subject`` subscriptions
(``--max-subscriptions``; beyond: ``ErrorReply("quota")``); past ``MAX_SUBSCRIBERS`` in
all, a new subscription evicts the oldest one of whoever holds the most, so one peer's
flood cannot push out everyone else's; the evicted subscriber is told
(``ErrorReply("evicted")``, its watch ends). A subscription made again (same connection
and request id) replaces itself and evicts nobody.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from actors.runtime import Actor
from actors.scheduler.messages import (
    PeerUnreachable,
    Publish,
    Send,
    SubscriberCount,
    SubscriptionRequest,
)
from transport import protocol as wire

# Frames a subscriber may hold unacknowledged: enough to keep a fast reader busy.
WINDOW = 4
# Events per frame, and the frame's size: one frame carries a burst of commits; four of
# them in flight to each of a thousand subscribers that never read stay within ~64 MB.
MAX_FRAME_EVENTS = 1_000
FRAME_BYTES = 16 * 1024
# Events buffered per subscriber beyond its window (the oldest are dropped past it), and
# by all subscribers together: each may hold its share of the budget, at least MIN_BUFFERED.
MAX_BUFFERED = 50_000
BUFFERED_BUDGET = 500_000
MIN_BUFFERED = 100
# Subscriptions per hub; a client that leaves without unsubscribing is evicted first.
MAX_SUBSCRIBERS = 1_000
# An event's size in a frame beside its message text (ids, state, queue, times).
EVENT_BYTES = 48


@dataclass
class Subscription:
    peer: bytes
    request_id: int
    job_id: int | None
    credit: int = WINDOW
    buffer: deque[wire.Event] = field(default_factory=deque)
    dropped: int = 0
    subject: bytes = b""  # whose allowance it counts against (its key, or its connection)


class EventHub(Actor):
    restartable = True  # it holds only subscriptions; clients re-subscribe on reconnect

    def __init__(self) -> None:
        super().__init__("events")
        self.subscriptions: dict[tuple[bytes, int], Subscription] = {}
        self.seq = 0
        self.dropped = 0
        self.published = 0
        self.refused = 0
        self.evicted = 0
        self.max_per_subject = 64  # --max-subscriptions (the brain sets the config's)
        # Whom a connection's subscriptions count against: its key, shared by all of its
        # connections; without keys (the default here) the connection itself.
        self.subject: Callable[[bytes], bytes] = lambda peer: peer
        self.gateway: Actor
        self.scheduler: Actor

    async def handle(self, message: Any) -> None:
        match message:
            case Publish(events=events):
                self._publish(events)
            case SubscriptionRequest(peer=peer, message=wire.Subscribe(request_id=rid, job_id=job)):
                self._subscribe(peer, rid, job)
            case SubscriptionRequest(peer=peer, message=wire.EventsAck(request_id=rid)):
                sub = self.subscriptions.get((peer, rid))
                if sub is not None:
                    sub.credit = min(WINDOW, sub.credit + 1)
                    self._flush(sub)
            case SubscriptionRequest(peer=peer, message=wire.Unsubscribe(request_id=rid)):
                self.subscriptions.pop((peer, rid), None)
                self._count_changed()
            case PeerUnreachable(peer=peer):
                for key in [k for k in self.subscriptions if k[0] == peer]:
                    del self.subscriptions[key]
                self._count_changed()
            case _:
                raise TypeError(f"event hub got an unexpected message: {message!r}")

    def _subscribe(self, peer: bytes, rid: int, job_id: int | None) -> None:
        subject = self.subject(peer)
        again = (peer, rid) in self.subscriptions  # made again: replaces itself, takes no room
        held = Counter(sub.subject for sub in self.subscriptions.values())
        if not again and held[subject] >= self.max_per_subject:
            self.refused += 1
            text = (
                f"subscriptions: {held[subject]} held, the limit is {self.max_per_subject} "
                "(--max-subscriptions); unsubscribe first"
            )
            self.gateway.tell(Send(peer, wire.ErrorReply("quota", text, rid)))
            self._count_changed()  # the gateway counted this Subscribe in already
            return
        if not again and len(self.subscriptions) >= MAX_SUBSCRIBERS:
            hog = max(held, key=held.__getitem__)
            oldest = next(k for k, sub in self.subscriptions.items() if sub.subject == hog)
            evicted = self.subscriptions.pop(oldest)
            self.evicted += 1
            text = (
                f"subscription evicted: the scheduler holds at most {MAX_SUBSCRIBERS:,} and "
                f"yours held the most ({held[hog]}); subscribe again to go on"
            )
            # Told, not silenced; not "quota": no strike for what another peer did.
            self.gateway.tell(Send(evicted.peer, wire.ErrorReply("evicted", text, oldest[1])))
        self.subscriptions[(peer, rid)] = Subscription(peer, rid, job_id, subject=subject)
        self._count_changed()

    def _count_changed(self) -> None:
        self.scheduler.tell(SubscriberCount(len(self.subscriptions)))

    def _publish(self, raw: list[tuple[Any, ...]]) -> None:
        """``raw`` items are (kind, job_id, status, queue, worker, token, fraction, message)."""
        if not self.subscriptions:
            return
        now = time.time()
        events = []
        for kind, job_id, status, queue, worker, token, fraction, message in raw:
            self.seq += 1
            events.append(
                wire.Event(
                    self.seq, now, kind, job_id, status, queue, worker, token, fraction, message
                )
            )
        self.published += len(events)
        room = max(MIN_BUFFERED, min(MAX_BUFFERED, BUFFERED_BUDGET // len(self.subscriptions)))
        for sub in self.subscriptions.values():
            wanted = events if sub.job_id is None else [e for e in events if e.job_id == sub.job_id]
            sub.buffer.extend(wanted)
            self._flush(sub)
            over = len(sub.buffer) - room
            if over > 0:  # what the window could not take, beyond its share: the oldest
                for _ in range(over):
                    sub.buffer.popleft()
                sub.dropped += over
                self.dropped += over

    def _flush(self, sub: Subscription) -> None:
        buffer = sub.buffer
        while sub.credit > 0 and buffer:
            batch: list[wire.Event] = []
            size = 0
            while buffer and len(batch) < MAX_FRAME_EVENTS and size < FRAME_BYTES:
                event = buffer.popleft()
                size += EVENT_BYTES + len(event.message) + len(event.queue) + len(event.worker)
                batch.append(event)
            self.gateway.tell(Send(sub.peer, wire.Events(sub.request_id, batch, sub.dropped)))
            sub.dropped = 0
            sub.credit -= 1

    def metrics(self) -> dict[str, Any]:
        return {
            "dropped": self.dropped,
            "published": self.published,
            "subscribers": len(self.subscriptions),
            "refused_subscriptions": self.refused,
            "evicted_subscriptions": self.evicted,
        }
