"""The gateway actor: the network edge. Owns the server transport.

Every inbound frame is untrusted: size-checked and decoded into a typed
Struct by ``transport.protocol``; anything that fails gets an ``ErrorReply``
naming what was wrong and goes no further, so it changes nothing; refusals are
counted, and logged at most once a second (a flood of bad frames must not turn
into a flood of log lines). A peer must say hello (with a matching protocol
version) before anything else. A frame from a peer that has not (a worker whose
frames waited out a scheduler restart, a client that reconnected) is no error:
it is answered ``hello_first`` (a worker's frames once per episode, however
many of them waited) and neither counted nor logged above DEBUG. Decoded
requests go to the scheduler (client requests) or the dispatcher (worker
traffic). Outbound, other actors ``tell`` it ``Send`` messages; it encodes
and sends them without blocking: frames that start or stop work at once,
replies at the end of its turn, so a job starts before its submitter is
answered.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from actors.runtime import Actor
from actors.scheduler import quotas
from actors.scheduler.messages import (
    FromClient,
    FromWorker,
    PeerUnreachable,
    Seen,
    Send,
    SubscriberCount,
    SubscriptionRequest,
)
from actors.scheduler.ratelog import AskedPeers, RateLimitedLog
from actors.scheduler.roles import refusal
from transport import ServerTransport
from transport import protocol as wire
from transport.errors import BadFrame, PeerGone
from transport.fast_requests import decode_request_fast

log = logging.getLogger("corral.gateway")

# Frames that start or stop work on a worker (and the Welcome that precedes any of them):
# sent as soon as they arrive. Everything else is sent at the end of the gateway's turn,
# in order (see Gateway.on_idle).
WORK_FRAMES = (wire.Assign, wire.StopJob, wire.Welcome)

# Peers that said hello. Bounded so a stream of short-lived CLI connections
# cannot grow it forever; a forgotten peer is simply asked to say hello again.
MAX_KNOWN_PEERS = 100_000

# Peer ids of in-process peers (the dashboard, actors.http.bridge): replies to them are
# handed to ``Gateway.local`` instead of the transport. ZeroMQ's own routing ids are 5
# bytes (a zero byte, then 4), keyed ids start with the role, the memory transport's with
# "mem-"; but a peer may choose its routing id, a leading zero byte included, so a network
# frame from an id with this prefix is refused unread (``_route``).
LOCAL_PEER = b"\x00local:"

WORKER_FRAMES = (wire.Results, wire.Heartbeat, wire.Drain, wire.Goodbye, wire.Progress)

# A peer refused over its quota (actors.scheduler.quotas) this many times within
# STRIKE_WINDOW seconds is not listened to for BAN_SECONDS: its frames are dropped unread
# (ZeroMQ gives a server no way to close one peer's connection): the key and all its
# connections. Only keys are struck: without keys the jobs, bytes and rate allowances are
# all peers' together, so a refusal may be another peer's doing, and a ban of a connection
# would silence the innocent while the guilty evade it with a new one.
STRIKES = 20
STRIKE_WINDOW = 10.0
BAN_SECONDS = 30.0


class Gateway(Actor):
    """``term``: the leader's term its Welcome carries (0: a single scheduler);
    ``owns_transport``: close the transport on stop (False: a standby keeps serving on it
    after this leader steps down)."""

    def __init__(
        self,
        transport: ServerTransport,
        heartbeat_interval: float,
        instance: str,
        term: int = 0,
        owns_transport: bool = True,
    ) -> None:
        super().__init__("gateway")
        self.instance = instance  # changes with every scheduler start
        self.term = term
        self.database_id = ""  # the database served, as the dispatcher's
        self.database = ""
        self.owns_transport = owns_transport
        self.transport = transport
        self.heartbeat_interval = heartbeat_interval
        self.known: OrderedDict[bytes, None] = OrderedDict()
        self.asked = AskedPeers()  # told hello_first, no hello yet
        self.bad_frames = 0
        self.unknown_peer_frames = 0  # frames before hello: normal after a restart
        self.forbidden_frames = 0  # frames a key's role does not allow (actors.scheduler.roles)
        self.banned_frames = 0  # frames dropped from a peer not listened to (STRIKES)
        self._strikes: dict[bytes, tuple[int, float]] = {}  # subject -> (refusals, since)
        self.banned: dict[bytes, float] = {}  # subject -> monotonic time the ban ends
        # The role the key folder gives a key now (None: removed); None without keys.
        self.role_of: Callable[[str], str | None] | None = None
        self._warn = RateLimitedLog(log)
        # Where replies to in-process peers (LOCAL_PEER) go; None: there are none.
        self.local: Callable[[bytes, wire.Message], None] | None = None
        self._replies: list[Send] = []
        self.scheduler: Actor
        self.dispatcher: Actor
        self.heartbeat: Actor
        self.events: Actor

    async def on_start(self) -> None:
        self.spawn(self._read_loop(), "read")

    async def handle(self, message: Any) -> None:
        match message:
            case Send(peer=peer, message=outbound):
                if isinstance(outbound, WORK_FRAMES):
                    self._send(peer, outbound)
                else:
                    self._replies.append(message)
            case _:
                raise TypeError(f"gateway got an unexpected message: {message!r}")

    def on_idle(self) -> None:
        # Replies wait for the end of the turn, so the work frames that arrived in the same
        # turn leave first: a job starts before its submitter hears it was accepted.
        replies, self._replies = self._replies, []
        for send in replies:
            self._send(send.peer, send.message)

    def _send(self, peer: bytes, message: wire.Message) -> None:
        if self.local is not None and peer.startswith(LOCAL_PEER):
            self.local(peer, message)
            return
        if type(message) is wire.ErrorReply and message.code == "quota":
            self._strike(peer)
        try:
            self.transport.send(peer, wire.encode(message))
        except PeerGone as exc:
            log.info("dropping %s: %s", type(message).__name__, exc)
            self.known.pop(peer, None)
            self.dispatcher.tell(PeerUnreachable(peer))
            self.events.tell(PeerUnreachable(peer))

    def _strike(self, peer: bytes) -> None:
        """One more refusal over a quota; too many in a row and the key is not heard."""
        who = self.transport.identity(peer)
        if who is None:
            return  # no key: see STRIKES
        subject = quotas.subject(who, peer)
        now = time.monotonic()
        count, since = self._strikes.get(subject, (0, now))
        if now - since > STRIKE_WINDOW:
            count, since = 0, now
        count += 1
        if count < STRIKES:
            self._strikes[subject] = (count, since)
            if len(self._strikes) > MAX_KNOWN_PEERS:
                self._strikes.clear()
            return
        self._strikes.pop(subject, None)
        self.banned = {s: end for s, end in self.banned.items() if end > now}
        self.banned[subject] = now + BAN_SECONDS
        self.known.pop(peer, None)
        self.events.tell(PeerUnreachable(peer))
        log.warning(
            "not listening to %s for %g s: refused over its quota %d times within %g s",
            peer.hex(),
            BAN_SECONDS,
            STRIKES,
            STRIKE_WINDOW,
        )

    def _refuse(self, peer: bytes, code: str, text: str, request_id: int = 0) -> None:
        self.bad_frames += 1
        self._warn("refused frame from %s: %s: %s", peer.hex(), code, text[:500])
        self._send(peer, wire.ErrorReply(code, text, request_id))

    def _hello_first(self, peer: bytes, message: wire.Message) -> None:
        """A frame from a peer that has not said hello (to this scheduler process)."""
        self.unknown_peer_frames += 1
        if isinstance(message, WORKER_FRAMES) and not self.asked.should_ask(peer):
            return  # already told; its hello is on the way
        log.debug("frame from %s before its hello: asking it to say hello", peer.hex())
        text = "say hello (ClientHello or WorkerHello) first"
        self._send(peer, wire.ErrorReply("hello_first", text, getattr(message, "request_id", 0)))

    async def _read_loop(self) -> None:
        transport = self.transport
        while True:
            batch = await transport.recv_batch()
            workers_seen: list[bytes] = []
            for peer, frame in batch:
                self._route(peer, frame, workers_seen)
            if workers_seen:
                self.heartbeat.tell(Seen(workers_seen, time.monotonic()))
            # recv_batch returns without suspending while frames keep coming: yield, so a
            # peer flooding frames cannot keep the other actors (heartbeat acks) waiting.
            await asyncio.sleep(0)

    def _route(self, peer: bytes, frame: bytes, workers_seen: list[bytes]) -> None:
        if peer.startswith(LOCAL_PEER):  # a network peer named like an in-process one
            self.forbidden_frames += 1
            self._warn("refused frame from %s: a routing id reserved in-process", peer.hex())
            return
        who = self.transport.identity(peer)
        if self.banned and self._banned(quotas.subject(who, peer)):
            self.banned_frames += 1
            return
        try:
            message = decode_request_fast(frame)
        except BadFrame as exc:
            self._refuse(peer, exc.code, exc.message, exc.request_id)
            return
        except Exception as exc:  # a decoder bug must not take the scheduler down
            self.bad_frames += 1
            self._warn("unexpected error decoding a frame from %s", peer.hex(), exc_info=exc)
            self._send(peer, wire.ErrorReply("bad_frame", f"frame could not be decoded: {exc!r}"))
            return
        forbidden = refusal(who, message)
        if who is not None and self.role_of is not None and self.role_of(who.key) != who.role:
            forbidden = f"this {who.role} key is no longer accepted by the scheduler"
            self.known.pop(peer, None)
        if forbidden is not None:
            self.forbidden_frames += 1
            self._warn("refused frame from %s: forbidden: %s", peer.hex(), forbidden)
            rid = getattr(message, "request_id", 0)
            self._send(peer, wire.ErrorReply("forbidden", forbidden, rid))
            return
        match message:
            case wire.ClientHello(protocol=version) | wire.WorkerHello(protocol=version):
                if version != wire.PROTOCOL_VERSION:
                    self._refuse(
                        peer,
                        "protocol_version",
                        f"scheduler speaks protocol {wire.PROTOCOL_VERSION}, peer sent {version}",
                    )
                    return
                self.known[peer] = None
                self.asked.said_hello(peer)
                if len(self.known) > MAX_KNOWN_PEERS:
                    self.known.popitem(last=False)
                if isinstance(message, wire.WorkerHello):
                    workers_seen.append(peer)
                    self.dispatcher.tell(FromWorker(peer, message))
                else:
                    self._send(
                        peer,
                        wire.Welcome(
                            wire.PROTOCOL_VERSION,
                            self.heartbeat_interval,
                            self.instance,
                            term=self.term,
                            database_id=self.database_id,
                            database=self.database,
                        ),
                    )
                return
        if peer not in self.known:
            self._hello_first(peer, message)
            return
        if isinstance(message, wire.Results | wire.Heartbeat | wire.Drain | wire.Goodbye):
            workers_seen.append(peer)
            self.dispatcher.tell(FromWorker(peer, message))
        elif isinstance(message, wire.Progress):
            self.dispatcher.tell(FromWorker(peer, message))
        elif isinstance(message, wire.Subscribe) and who is not None and who.role == "client":
            # A client key watches only its own jobs (actors.scheduler.owners).
            self.scheduler.tell(FromClient(peer, message))  # to check the job is its own
        elif isinstance(message, wire.Subscribe | wire.EventsAck | wire.Unsubscribe):
            if isinstance(message, wire.Subscribe):
                # The scheduler records events only while someone subscribes. Tell it now,
                # in frame order: a Submit read after this Subscribe reaches the scheduler
                # after this notice, so its first transitions are streamed too (the hub's
                # own count would arrive a hop later).
                self.scheduler.tell(SubscriberCount(1))
            self.events.tell(SubscriptionRequest(peer, message))
        else:
            self.scheduler.tell(FromClient(peer, message))

    def _banned(self, subject: bytes) -> bool:
        end = self.banned.get(subject)
        if end is None:
            return False
        if end > time.monotonic():
            return True
        del self.banned[subject]
        return False

    def metrics(self) -> dict[str, Any]:
        return {
            "bad_frames": self.bad_frames,
            "unknown_peer_frames": self.unknown_peer_frames,
            "forbidden_frames": self.forbidden_frames,
            "banned_frames": self.banned_frames,
            "banned_peers": len(self.banned),
        }

    async def on_stop(self) -> None:
        if self.owns_transport:
            await self.transport.close()
