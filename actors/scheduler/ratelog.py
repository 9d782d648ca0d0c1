"""Rate-limited logging for what hostile or broken peers can trigger at will.

A peer can send thousands of bad frames a second; one log line (let alone a traceback)
per frame would make the log the bottleneck and bury everything else in it. A
:class:`RateLimitedLog` writes at most one line per interval and says, in the next line
it writes, how many it suppressed meanwhile. Counters (metrics) still count every event.
:class:`AskedPeers` does the same for one reply: ``hello_first`` to a peer not known.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable

# One line a second per kind of trouble is enough to notice it and cheap to write.
DEFAULT_INTERVAL_S = 1.0


class RateLimitedLog:
    """At most one record per ``interval`` seconds; the rest are counted, then reported."""

    def __init__(
        self,
        logger: logging.Logger,
        level: int = logging.WARNING,
        interval: float = DEFAULT_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.level = level
        self.interval = interval
        self.clock = clock
        self.suppressed = 0
        self._last = -float("inf")

    def __call__(self, msg: str, *args: object, exc_info: BaseException | None = None) -> bool:
        """Log ``msg % args`` unless a line was written less than ``interval`` ago.

        Returns whether it was written. The formatting is skipped when suppressed, so a
        flood costs one clock read and one increment per event."""
        now = self.clock()
        if now - self._last < self.interval:
            self.suppressed += 1
            return False
        self._last = now
        if self.suppressed:
            msg = f"{msg} (and {self.suppressed} more like it since the last report)"
            self.suppressed = 0
        self.logger.log(self.level, msg, *args, exc_info=exc_info)
        return True


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
