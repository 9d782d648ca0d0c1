"""The heartbeat monitor actor: owns the last-seen time of every worker.

Every frame from a worker counts as a sign of life (the gateway reports them
in batches). One periodic check, not a timer per worker or per job, moves a
silent worker to ``suspect``, then ``dead`` (silent for a whole lease: no new
work), then ``expired`` (silent for lease + grace: its leases are reclaimed).
A worker heard from again goes back to ``alive``. Time is injected, so tests
drive it with a fake clock.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from actors.config import SchedulerConfig
from actors.runtime import Actor
from actors.scheduler.messages import Forget, Seen, Silent


class HeartbeatMonitor(Actor):
    restartable = True  # its state is only timestamps; a restart loses nothing important

    def __init__(
        self,
        config: SchedulerConfig,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        super().__init__("heartbeat")
        self.config = config
        self.clock = clock
        self.sleep = sleep
        self.last_seen: dict[bytes, float] = {}
        self.state: dict[bytes, str] = {}
        self.dispatcher: Actor

    async def on_start(self) -> None:
        self.spawn(self._tick_loop(), "tick")

    async def handle(self, message: Any) -> None:
        match message:
            case Seen(peers=peers, at=at):
                for peer in peers:
                    self.last_seen[peer] = at
                    if self.state.get(peer, "alive") != "alive":
                        self.state[peer] = "alive"
                        self.dispatcher.tell(Silent(peer, "alive", 0.0))
            case Forget(peer=peer):
                self.last_seen.pop(peer, None)
                self.state.pop(peer, None)
            case _:
                raise TypeError(f"heartbeat monitor got an unexpected message: {message!r}")

    async def _tick_loop(self) -> None:
        while True:
            await self.sleep(self.config.heartbeat_interval / 2)
            self.check()

    def check(self) -> None:
        """Compare every worker's silence with the thresholds; report changes only."""
        now = self.clock()
        config = self.config
        for peer, seen in list(self.last_seen.items()):
            silent = now - seen
            if silent >= config.lease + config.lease_grace:
                verdict = "expired"
            elif silent >= config.lease:
                verdict = "dead"
            elif silent >= config.suspect_after:
                verdict = "suspect"
            else:
                verdict = "alive"
            if verdict != self.state.get(peer, "alive"):
                self.state[peer] = verdict
                self.dispatcher.tell(Silent(peer, verdict, silent))
            if verdict == "expired":
                del self.last_seen[peer]
                del self.state[peer]
