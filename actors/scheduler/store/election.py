"""The election interface: what a scheduler with standbys asks of the database that holds
the leader's term (``postgres_leader.PostgresElection`` is the implementation; SQLite has
one scheduler per file and no election).

A term is a number that only grows. ``acquire`` starts a new one when the current term
expired (or, at start-up, when it is held at this scheduler's own address: a predecessor
that died there); ``renew`` extends this scheduler's own term if it still holds it and it
has not expired; ``resign`` ends it at once, so a standby takes over within a poll.
Expiry is judged by the database's clock, never by a scheduler's. Every scheduler also
writes a presence row (``beat``) that ``peers`` lists for ``corral status``.

Every method raises StoreError (one line) when the database cannot be reached; the
implementation reconnects on the next call.
"""

from __future__ import annotations

from typing import Protocol

import msgspec


class LeaderRecord(msgspec.Struct, frozen=True):
    """The leader row as a scheduler last read it."""

    term: int  # 0 before anyone led
    address: str  # where the leader listens ("" before anyone led)
    live: bool  # False once the term expired (or was resigned): an election is on


class PeerRecord(msgspec.Struct, frozen=True):
    """A scheduler's presence row."""

    name: str
    address: str
    role: str  # "leader" or "standby"
    seen_s: float  # seconds since it last wrote its row (by the database's clock)


class Election(Protocol):
    """One scheduler's side of the election (``name``: this scheduler, ``address``: where
    it listens; the implementation holds both)."""

    where: str

    async def acquire(self, *, reclaim: bool = False) -> int | None:
        """Take the leader's term if it is free; the new term, or None (someone holds it)."""
        ...

    async def renew(self, term: int) -> bool:
        """Extend ``term`` by the TTL; False if this scheduler does not hold it anymore."""
        ...

    async def resign(self, term: int) -> None:
        """End ``term`` now, if this scheduler still holds it."""
        ...

    async def leader(self) -> LeaderRecord: ...

    async def beat(self, role: str) -> None:
        """Write this scheduler's presence row (the leader also forgets long-gone ones)."""
        ...

    async def peers(self, seen_within: float) -> list[PeerRecord]:
        """The schedulers seen in the last ``seen_within`` seconds, by address."""
        ...

    async def leave(self) -> None:
        """Remove this scheduler's presence row (a clean stop); never raises."""
        ...

    async def close(self) -> None: ...
