"""The dashboard's way into the scheduler: the wire requests the CLI sends, asked in-process.

A page never queries the store or reads an actor's state itself. It asks what ``corral
status``, ``corral jobs``, ``corral job`` (and the rest) ask, as the same typed requests,
handled by the same scheduler code (``actors.scheduler.requests`` and friends), answered
through the gateway: to an in-process peer (``gateway.LOCAL_PEER``) the gateway hands the
reply here instead of to the transport. So the dashboard shows what the CLI shows, after a
restart too (jobs are read from the store), and applies the same checks.

A request is encoded and decoded by the wire codec before it goes in, so a bad value from
a query string (an id out of range, a page size too large) is refused by the protocol's
own bounds (``BadRequest``, one line), never reaching the scheduler. Its errors never
leave the HTTP package (each becomes an HTTP answer), so they live here, not in
``actors.errors``. The process's HTTP
server outlives a leader's term (PostgreSQL): ``brain()`` is the current term's Brain, None
while standing by (``Standby``).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from actors.errors import CorralError
from actors.scheduler.gateway import LOCAL_PEER, Gateway
from actors.scheduler.messages import FromClient, SubscriberCount, SubscriptionRequest
from transport import protocol as wire
from transport.errors import BadFrame

if TYPE_CHECKING:
    from actors.scheduler.brain import Brain

# A request answered by the scheduler takes milliseconds, a page of jobs from the store
# tens of them; past this the scheduler is stuck or stopping, and the page says so.
ASK_TIMEOUT_S = 10.0

R = TypeVar("R", bound=wire.Message)


class Standby(CorralError):
    """Raised when this scheduler leads no term (it stands by, or is starting)."""


class BadRequest(CorralError):
    """Raised when a request breaks the protocol's bounds, or the scheduler refuses it
    (``ErrorReply``); the message is one line for the person who asked."""


class NotFound(BadRequest):
    """Raised when the scheduler answers that what was named does not exist."""


class Unavailable(CorralError):
    """Raised when the scheduler did not answer within ASK_TIMEOUT_S, or its term ended
    while it was asked."""


class Bridge:
    """Asks the current term's scheduler; one in-process peer id per request or stream."""

    def __init__(self, brain: Callable[[], Brain | None]) -> None:
        self.brain = brain
        self._ids = itertools.count(1)
        self._waiting: dict[bytes, asyncio.Future[wire.Message]] = {}
        self._streams: dict[bytes, Callable[[wire.Message], None]] = {}

    def current(self) -> Brain:
        brain = self.brain()
        if brain is None:
            raise Standby()
        if not brain.running:
            raise Unavailable("the scheduler is starting (or stopping); try again in a moment")
        gateway = brain.scheduler.gateway
        if isinstance(gateway, Gateway):  # each term has its own
            gateway.local = self._deliver
        return brain

    def _deliver(self, peer: bytes, message: wire.Message) -> None:
        waiting = self._waiting.pop(peer, None)
        if waiting is not None:
            if not waiting.done():
                waiting.set_result(message)
            return
        stream = self._streams.get(peer)
        if stream is not None:
            stream(message)

    def _peer(self) -> tuple[bytes, int]:
        n = next(self._ids)
        return LOCAL_PEER + str(n).encode(), n

    async def ask(self, make: Callable[[int], wire.Message], expect: type[R]) -> R:
        """The scheduler's reply to ``make(request_id)``, of type ``expect``; raises
        BadRequest, Standby or Unavailable."""
        peer, rid = self._peer()
        request = checked(make(rid))
        brain = self.current()
        reply: asyncio.Future[wire.Message] = asyncio.get_running_loop().create_future()
        self._waiting[peer] = reply
        try:
            brain.scheduler.tell(FromClient(peer, request))
            async with asyncio.timeout(ASK_TIMEOUT_S):
                answer = await reply
        except TimeoutError:
            raise Unavailable(f"the scheduler did not answer within {ASK_TIMEOUT_S:g} s") from None
        finally:
            self._waiting.pop(peer, None)
        if isinstance(answer, wire.ErrorReply):
            raise (NotFound if answer.code == "not_found" else BadRequest)(answer.message)
        if not isinstance(answer, expect):
            raise Unavailable(f"unexpected answer {type(answer).__name__}")
        return answer

    def subscribe(self, on_message: Callable[[wire.Message], None]) -> Subscription:
        """Subscribe to every event, as ``corral watch`` does; ``on_message`` hears each
        ``Events`` frame (and an ``ErrorReply`` if the hub refuses or evicts it)."""
        peer, rid = self._peer()
        brain = self.current()
        self._streams[peer] = on_message
        # As the gateway does for a Subscribe: the scheduler records events from now on.
        brain.scheduler.tell(SubscriberCount(1))
        brain.scheduler.events.tell(SubscriptionRequest(peer, wire.Subscribe(rid)))
        return Subscription(self, brain, peer, rid)


class Subscription:
    """One event stream of one term's hub: acknowledge each frame taken (the hub sends at
    most its window unacknowledged and drops the oldest beyond its bound); close ends it."""

    def __init__(self, bridge: Bridge, brain: Brain, peer: bytes, rid: int) -> None:
        self.bridge, self.brain, self.peer, self.rid = bridge, brain, peer, rid

    @property
    def current(self) -> bool:
        """Still the term that serves (False once it ended: the stream should end)."""
        return self.bridge.brain() is self.brain

    def ack(self) -> None:
        self.brain.scheduler.events.tell(SubscriptionRequest(self.peer, wire.EventsAck(self.rid)))

    def close(self) -> None:
        self.bridge._streams.pop(self.peer, None)
        self.brain.scheduler.events.tell(SubscriptionRequest(self.peer, wire.Unsubscribe(self.rid)))


def checked(request: Any) -> Any:
    """``request`` as the wire would deliver it: through the codec's typed decode, so the
    protocol's bounds apply (BadRequest otherwise)."""
    try:
        return wire.decode_request(wire.encode(request))
    except BadFrame as exc:
        raise BadRequest(_short(exc.message)) from None


def _short(text: str) -> str:
    """msgspec's message, without the prefix the wire adds."""
    return text.removeprefix("message does not match the protocol: ")
