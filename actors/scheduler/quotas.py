"""Per-client allowances (issue 16): how much of the scheduler one client may hold, so
that no peer can exhaust it and nobody else notices one that tries.

- **jobs in flight** (submitted, not finished) and **the bytes of their arguments**, per
  owner: per client key; on a scheduler without keys, all peers together (a peer without a
  key cannot be told apart from a new one: it reconnects under another id at will);
- **submissions per second** per owner: a token bucket holding one second's worth;
- **waits held**: job outcomes a client waits for and has not been told yet, per key (per
  connection without keys).

Subscriptions and their buffers are the event hub's (``actors.scheduler.events``). A
request over a limit is refused whole with ``ErrorReply("quota", ...)`` naming the limit
and the flag that raises it, and counted; the gateway stops listening to a peer that keeps
going (``actors.scheduler.gateway``). The defaults are far above what one user meets
(a 1,000,000-job backlog fits twice); the flags raise or lower them.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

import msgspec

from actors.config import SchedulerConfig
from transport import Identity


class Limits(msgspec.Struct, frozen=True, kw_only=True):
    jobs: int = 2_000_000  # jobs in flight per owner
    bytes: int = 1 << 30  # bytes of arguments those jobs hold, per owner
    rate: float = 100_000.0  # jobs submitted per second per owner (burst: one second's)
    waits: int = 1_000_000  # job outcomes waited for, per key (per connection without keys)


def subject(who: Identity | None, peer: bytes) -> bytes:
    """Whom a connection's allowances count against: its key (``who``, as the transport
    proved it), shared by all the key's connections; without keys, the connection."""
    return who.key.encode() if who is not None else peer


def limits_of(config: SchedulerConfig) -> Limits:
    return Limits(
        jobs=config.max_jobs_in_flight,
        bytes=config.max_bytes_in_flight,
        rate=config.max_submit_rate,
        waits=config.max_waits,
    )


class HeldJobs:
    """Jobs in flight and their argument bytes, per owner; the job table keeps it current
    (created, settled, requeued, loaded at start-up)."""

    def __init__(self) -> None:
        self.by_owner: dict[str, list[int]] = {}  # owner -> [jobs, bytes]

    def add(self, owner: str, jobs: int, nbytes: int) -> None:
        """Count ``jobs`` more (fewer, if negative: a job settled, a reservation given
        back); an owner left with none is forgotten."""
        held = self.by_owner.get(owner)
        if held is None:
            if jobs > 0:
                self.by_owner[owner] = [jobs, nbytes]
            return
        held[0] += jobs
        held[1] += nbytes
        if held[0] <= 0:
            del self.by_owner[owner]

    def of(self, owner: str) -> tuple[int, int]:
        held = self.by_owner.get(owner)
        return (held[0], held[1]) if held is not None else (0, 0)


class Quotas:
    """The checks; the scheduler calls them before it creates or registers anything."""

    def __init__(
        self, limits: Limits, held: HeldJobs, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limits = limits
        self.held = held
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # owner -> (tokens, at)
        self.waits: Counter[bytes] = Counter()  # subject -> outcomes waited for
        self.refused: Counter[str] = Counter()  # limit -> requests refused
        # Of the last refusal, seconds until the same submission would pass (rate only).
        self.retry_after = 0.0

    def submit_refusal(self, owner: str, jobs: int, nbytes: int) -> str | None:
        """Why ``owner`` may not submit ``jobs`` jobs holding ``nbytes`` bytes of
        arguments now, or None (and the submission is charged to its rate)."""
        limits = self.limits
        self.retry_after = 0.0
        held_jobs, held_bytes = self.held.of(owner)
        if held_jobs + jobs > limits.jobs:
            return self._refuse(
                "jobs",
                f"jobs in flight: {held_jobs:,} not finished, {jobs:,} more would pass the "
                f"limit of {limits.jobs:,} per client (--max-jobs-in-flight)",
            )
        if held_bytes + nbytes > limits.bytes:
            return self._refuse(
                "bytes",
                f"argument bytes held: {held_bytes:,} by jobs not finished, {nbytes:,} more "
                f"would pass the limit of {limits.bytes:,} per client (--max-bytes-in-flight)",
            )
        now = self.clock()
        tokens, at = self._buckets.get(owner, (limits.rate, now))
        tokens = min(limits.rate, tokens + (now - at) * limits.rate)
        # A submission larger than a whole second's allowance passes on a full bucket and
        # leaves it in debt (refusing it forever would make the rate a size limit).
        need = min(float(jobs), limits.rate)
        if tokens < need:
            self._buckets[owner] = (tokens, now)
            self.retry_after = (need - tokens) / limits.rate
            return self._refuse(
                "rate",
                f"submission rate: over {limits.rate:,.0f} jobs per second per client "
                f"(--max-submit-rate); retry in {self.retry_after:.2f} s",
            )
        self._buckets[owner] = (tokens - jobs, now)
        if len(self._buckets) > 100_000:  # owners are keys, or "": never this many
            self._buckets.clear()
        return None

    def wait_refusal(self, subject: bytes, count: int) -> str | None:
        """Why ``subject`` may not wait for ``count`` more job outcomes, or None."""
        held = self.waits.get(subject, 0)
        if held + count > self.limits.waits:
            return self._refuse(
                "waits",
                f"waits held: {held:,} job outcomes waited for, {count:,} more would pass the "
                f"limit of {self.limits.waits:,} (--max-waits)",
            )
        return None

    def waited(self, subject: bytes, count: int) -> None:
        if count:
            self.waits[subject] += count

    def answered(self, subject: bytes, count: int) -> None:
        left = self.waits[subject] - count
        if left > 0:
            self.waits[subject] = left
        else:
            del self.waits[subject]

    def _refuse(self, limit: str, text: str) -> str:
        self.refused[limit] += 1
        return text

    def metrics(self) -> dict[str, int]:
        return {f"quota_refused_{limit}": n for limit, n in self.refused.items()}
