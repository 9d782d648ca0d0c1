"""What a worker sends besides heartbeats: results (with the slots they free) and progress.

``Outbox`` keeps every result until the scheduler acknowledges it (a reconnecting hello
claims them, and they are resent after the Welcome), gathers the results and freed slots
of one loop turn into as few Results frames as fit the frame limit, and drops results
once the worker is abandoning its jobs (they would be fake). ``ProgressRelay`` keeps only
the latest report per job and sends them at most every ``PROGRESS_EVERY_S``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

from actors.worker.results import pack
from transport import protocol as wire

# Live views refresh about once a second, so four updates a second look smooth and cost little.
PROGRESS_EVERY_S = 0.25

Send = Callable[[wire.Message], None]


class Outbox:
    def __init__(self, send: Send) -> None:
        self._send = send
        self.unacked: dict[int, wire.JobResult] = {}
        self._freed: dict[int, bool] = {}  # job id -> whether its slot is free (unacked ones)
        self._batch: list[tuple[wire.JobResult, bool]] = []
        self._spare_credits = 0
        self._scheduled = False
        self.closed = False  # a hard stop: nothing more is reported

    def report(self, result: wire.JobResult, freed: bool) -> None:
        """Send ``result`` this loop turn; ``freed``: its slot can run another job now."""
        if self.closed:
            return
        self.unacked[result.job_id] = result
        self._freed[result.job_id] = freed
        self._batch.append((result, freed))
        self._schedule()

    def slot_freed(self, slots: int = 1, job_id: int = 0) -> None:
        """Slots that can run again with no result of their own to carry the credit: a
        handler (of ``job_id``) that finally ended after its result went out, an
        assignment dropped."""
        if job_id in self._freed:
            self._freed[job_id] = True  # a resend of its result now frees the slot
        self._spare_credits += slots
        self._schedule()

    def acked(self, job_ids: list[int]) -> None:
        for job_id in job_ids:
            self.unacked.pop(job_id, None)
            self._freed.pop(job_id, None)

    def resend(self) -> None:
        """Every unacknowledged result again (a restarted scheduler may not have them)."""
        batch = [(r, self._freed.get(r.job_id, True)) for r in self.unacked.values()]
        for frame in pack(batch, 0):
            self._send(frame)

    def _schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        """Results frames (each under the frame limit) for what finished this loop turn."""
        self._scheduled = False
        batch, self._batch = self._batch, []
        spare, self._spare_credits = self._spare_credits, 0
        for frame in pack(batch, spare):
            self._send(frame)


class ProgressRelay:
    def __init__(
        self, send: Send, held: Mapping[int, wire.Assignment], connected: Callable[[], bool]
    ) -> None:
        self._send = send
        self._held = held
        self._connected = connected
        self._latest: dict[int, tuple[int, int, float, str]] = {}
        self._timer: asyncio.TimerHandle | None = None

    def record(self, job_id: int, token: int, fraction: float, message: str) -> None:
        """A handler's report (on the loop); dropped unless that lease is still held."""
        held = self._held.get(job_id)
        if held is None or held.token != token:  # finished: a late report is moot
            return
        self._latest[job_id] = (job_id, token, fraction, message)
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(PROGRESS_EVERY_S, self._flush)

    def _flush(self) -> None:
        self._timer = None
        updates = [u for u in self._latest.values() if u[0] in self._held]
        self._latest.clear()
        if updates and self._connected():
            self._send(wire.Progress(updates))
