"""The event hub actor: owns the subscriptions and streams committed events to them.

The scheduler publishes job transitions after they are committed, the dispatcher
worker health changes and job progress. A client subscribes over its ordinary
connection (``Subscribe``: everything, or one job) and receives ``Events``
frames. Delivery is credit-based: a subscriber may have ``WINDOW`` frames
unacknowledged; beyond that its events wait in a bounded buffer, and when the
buffer is full the oldest are dropped and counted (reported to the subscriber in
the next frame's ``dropped``, and in the metrics). A slow or stuck subscriber
therefore costs a bounded amount of memory and never slows scheduling.
"""

from __future__ import annotations

import time
from collections import deque
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
# Events per frame: one frame carries a burst of commits.
MAX_FRAME_EVENTS = 2_000
# Events buffered per subscriber beyond its window; the oldest are dropped past this.
MAX_BUFFERED = 50_000
# Subscriptions per hub; a client that leaves without unsubscribing is evicted first.
MAX_SUBSCRIBERS = 1_000


@dataclass
class Subscription:
    peer: bytes
    request_id: int
    job_id: int | None
    credit: int = WINDOW
    buffer: deque[wire.Event] = field(default_factory=deque)
    dropped: int = 0


class EventHub(Actor):
    restartable = True  # it holds only subscriptions; clients re-subscribe on reconnect

    def __init__(self) -> None:
        super().__init__("events")
        self.subscriptions: dict[tuple[bytes, int], Subscription] = {}
        self.seq = 0
        self.dropped = 0
        self.published = 0
        self.gateway: Actor
        self.scheduler: Actor

    async def handle(self, message: Any) -> None:
        match message:
            case Publish(events=events):
                self._publish(events)
            case SubscriptionRequest(peer=peer, message=wire.Subscribe(request_id=rid, job_id=job)):
                if len(self.subscriptions) >= MAX_SUBSCRIBERS:
                    del self.subscriptions[next(iter(self.subscriptions))]
                self.subscriptions[(peer, rid)] = Subscription(peer, rid, job)
                self._count_changed()
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
        for sub in self.subscriptions.values():
            wanted = events if sub.job_id is None else [e for e in events if e.job_id == sub.job_id]
            for event in wanted:
                if len(sub.buffer) >= MAX_BUFFERED:
                    sub.buffer.popleft()
                    sub.dropped += 1
                    self.dropped += 1
                sub.buffer.append(event)
            self._flush(sub)

    def _flush(self, sub: Subscription) -> None:
        while sub.credit > 0 and sub.buffer:
            count = min(len(sub.buffer), MAX_FRAME_EVENTS)
            batch = [sub.buffer.popleft() for _ in range(count)]
            self.gateway.tell(Send(sub.peer, wire.Events(sub.request_id, batch, sub.dropped)))
            sub.dropped = 0
            sub.credit -= 1

    def metrics(self) -> dict[str, Any]:
        return {
            "dropped": self.dropped,
            "published": self.published,
            "subscribers": len(self.subscriptions),
        }
