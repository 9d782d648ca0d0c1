"""Rate-limited logging for what hostile or broken peers can trigger at will.

A peer can send thousands of bad frames (or CURVE handshakes with unknown keys) a second;
one log line (let alone a traceback) per event would make the log the bottleneck and bury
everything else in it. A :class:`RateLimitedLog` writes at most one line per interval and
says, in the next line it writes, how many it suppressed meanwhile. Counters (metrics)
still count every event. Here, below the scheduler, so the transport's CURVE
authenticator uses it too.
"""

from __future__ import annotations

import logging
import time
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
