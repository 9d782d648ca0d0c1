"""A standby scheduler's network edge: while another scheduler leads, every frame that
arrives is answered ``NotLeader`` naming the leader's address and term (as the leader row
last said; an empty address while no term is live), so workers and clients go there.
Nothing is acted on: a hello is not welcomed, a request not served. A frame that cannot
be decoded gets the ErrorReply the gateway would give it.

It reads the transport the process bound at start; a term's gateway borrows that same
transport while this scheduler leads, and the standby takes it back when the term ends.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from actors.scheduler.ratelog import RateLimitedLog
from transport import ServerTransport
from transport import protocol as wire
from transport.errors import BadFrame, PeerGone

log = logging.getLogger("corral.standby")


class Standby:
    """Answers every frame on ``transport`` with NotLeader(``leader()``)."""

    def __init__(
        self,
        transport: ServerTransport,
        leader: Callable[[], tuple[str, int]],
        database_id: str = "",
    ) -> None:
        self.transport = transport
        self.leader = leader  # (address, term) of the leader as last known
        self.database_id = database_id  # the database it shares with the leader
        self.answered = 0
        self.bad_frames = 0
        self._warn = RateLimitedLog(log)

    async def serve(self) -> None:
        """Until cancelled (cancelling between two batches loses no frame)."""
        while True:
            for peer, frame in await self.transport.recv_batch():
                self._answer(peer, frame)
            await asyncio.sleep(0)  # a flood of frames must not starve the election

    def _answer(self, peer: bytes, frame: bytes) -> None:
        try:
            message = wire.decode_request(frame)
        except BadFrame as exc:
            self.bad_frames += 1
            self._warn("refused frame from %s: %s: %s", peer.hex(), exc.code, exc.message[:500])
            self._send(peer, wire.ErrorReply(exc.code, exc.message, exc.request_id))
            return
        except Exception as exc:  # a decoder bug must not take the standby down
            self.bad_frames += 1
            self._warn("unexpected error decoding a frame from %s", peer.hex(), exc_info=exc)
            self._send(peer, wire.ErrorReply("bad_frame", f"frame could not be decoded: {exc!r}"))
            return
        address, term = self.leader()
        self.answered += 1
        request_id = getattr(message, "request_id", 0)
        self._send(peer, wire.NotLeader(request_id, address, term, self.database_id))

    def _send(self, peer: bytes, message: wire.Message) -> None:
        try:
            self.transport.send(peer, wire.encode(message))
        except PeerGone as exc:
            log.debug("dropping %s: %s", type(message).__name__, exc)
