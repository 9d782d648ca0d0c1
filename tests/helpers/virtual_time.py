"""A monotonic clock a test moves by hand, for the scheduler's heartbeat monitor and the
model workers that talk to it (tests/actors/test_security_state_machine.py).

``VirtualClock`` stands still until the test calls ``advance``, so a run does not depend on
how loaded the machine is. ``VirtualMonitor`` is the real ``HeartbeatMonitor`` on that
clock: its periodic check sleeps on it (a jump wakes it at once), and it stamps each sign
of life by the same clock when it hears it (the gateway stamps ``Seen`` with the real one).

What still runs on real time in the scheduler must not matter to a test using these: the
orphan reclaim after a restart is a real ``call_later(lease + grace)``, so such a test
uses a lease far longer than it runs, and fires the reclaim itself when the virtual clock
says it is due (``tests.helpers.keyed_brain.KeyedBrain.time_passed``).
"""

from __future__ import annotations

import asyncio
from typing import Any

from actors.config import SchedulerConfig
from actors.scheduler.heartbeat import HeartbeatMonitor
from actors.scheduler.messages import Seen


class VirtualClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.t = start
        self._sleepers: set[asyncio.Future[None]] = set()

    def now(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        """Jump forward; every sleeper looks at the clock again."""
        self.t += seconds
        sleepers, self._sleepers = self._sleepers, set()
        for sleeper in sleepers:
            if not sleeper.done():
                sleeper.set_result(None)

    async def sleep(self, seconds: float) -> None:
        until = self.t + seconds
        while self.t < until:
            woken = asyncio.get_running_loop().create_future()
            self._sleepers.add(woken)
            await woken


class VirtualMonitor(HeartbeatMonitor):
    """The heartbeat monitor on a ``VirtualClock``; built as the brain builds its own."""

    def __init__(self, config: SchedulerConfig, *, clock: VirtualClock) -> None:
        super().__init__(config, clock=clock.now, sleep=clock.sleep)

    async def handle(self, message: Any) -> None:
        if isinstance(message, Seen):
            message = Seen(message.peers, self.clock())
        await super().handle(message)
