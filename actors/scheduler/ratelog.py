"""Rate-limited replies and logs for what hostile or broken peers can trigger at will.

:class:`RateLimitedLog` (``transport.ratelog``: the transport's CURVE authenticator uses it
too) writes at most one log line per interval; :class:`AskedPeers` does the same for one
reply: ``hello_first`` to a peer not known.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from transport.ratelog import RateLimitedLog as RateLimitedLog

# A peer told to say hello is told again only after this long: one reply per episode
# (however many of its frames waited out a restart), yet a reply lost with a broken
# connection cannot leave it waiting forever.
HELLO_FIRST_REPEAT_S = 5.0
# Peers remembered; the oldest is forgotten first (it is merely told again).
MAX_ASKED_PEERS = 10_000


class AskedPeers:
    """Peers told ``hello_first`` that have not said hello yet, bounded."""

    def __init__(
        self, repeat: float = HELLO_FIRST_REPEAT_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.repeat = repeat
        self.clock = clock
        self._asked: OrderedDict[bytes, float] = OrderedDict()

    def should_ask(self, peer: bytes) -> bool:
        """Whether to tell ``peer`` now (and remember that it was told)."""
        now = self.clock()
        told = self._asked.get(peer)
        if told is not None and now - told < self.repeat:
            return False
        self._asked[peer] = now
        self._asked.move_to_end(peer)
        if len(self._asked) > MAX_ASKED_PEERS:
            self._asked.popitem(last=False)
        return True

    def said_hello(self, peer: bytes) -> None:
        self._asked.pop(peer, None)
