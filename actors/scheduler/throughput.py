"""Jobs ended per second over the last minute, for status views: no timers, no per-job state."""

from __future__ import annotations

import time
from collections import deque


class Throughput:
    """Jobs ended per second over the last minute: 60 one-second buckets, no timers."""

    def __init__(self) -> None:
        self.buckets: deque[tuple[int, int, int]] = deque()  # (second, succeeded, ended)

    def add(self, succeeded: int, ended: int) -> None:
        second = int(time.monotonic())
        if self.buckets and self.buckets[-1][0] == second:
            _, s, e = self.buckets[-1]
            self.buckets[-1] = (second, s + succeeded, e + ended)
        else:
            self.buckets.append((second, succeeded, ended))
        self._trim(second)

    def _trim(self, second: int) -> None:
        while self.buckets and self.buckets[0][0] <= second - 60:
            self.buckets.popleft()

    def last_minute(self) -> tuple[int, int]:
        self._trim(int(time.monotonic()))
        return sum(b[1] for b in self.buckets), sum(b[2] for b in self.buckets)
