"""The leader election on PostgreSQL: one row, ``corral_leader``, and the fencing check
every commit of the leader starts with. (The interface is ``election.Election``; the
loops that use it are ``actors.scheduler.leadership``.)

The row holds the term (a number that only grows), its holder (a scheduler's name), the
address workers and clients reach the holder at, and when the term expires. Expiry is
the database's clock (``clock_timestamp()``), never a scheduler's: no clock skew.

- Acquire (a standby, every ``leadership.POLL_S``): ``term + 1`` where the term expired.
  At start-up a scheduler may also take a term held at its own address (a predecessor
  that died there: binding the address proved nobody listens on it any more).
- Renew (the leader): only its own, unexpired term; 0 rows means it lost it.
- Fence: the first statement of every commit of the leader reads the row ``FOR KEY
  SHARE`` and refuses the commit (``NotLeaderAnymore``, nothing of it applied) unless the
  term is still its own and unexpired. An acquire locks the row ``FOR UPDATE`` first,
  which conflicts with ``FOR KEY SHARE``: a new term starts only after every commit of the
  old one is done or refused, so the new leader loads everything the old one committed.
  A renewal is a plain ``UPDATE`` of a column that is not a key (``FOR NO KEY UPDATE``),
  which does not conflict with ``FOR KEY SHARE``: the leader's renewals never wait behind
  its own commits (with ``FOR SHARE`` they did, and a long commit on a loaded machine made
  a lone leader miss its renewals and lose its own term).
- A predecessor paused or cut off in the middle of a commit keeps its share lock until
  its session ends, which could be never (a stopped process's kernel still answers TCP).
  An acquire that waits on the row longer than ``ROW_LOCK_WAIT_S`` for an expired holder
  ends that holder's sessions (``pg_terminate_backend``, found by their
  ``application_name``) and tries again: its uncommitted transaction is rolled back.
  That needs the same role, or ``pg_signal_backend``; without it the standby waits.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import asyncpg

from actors.errors import NotLeaderAnymore, StoreError
from actors.scheduler.store import postgres_conn as pgconn
from actors.scheduler.store.election import LeaderRecord, PeerRecord
from actors.scheduler.store.postgres_schema import DATABASE_ID, migrate

log = logging.getLogger("corral.election")

# An acquire waiting this long on the leader row is held up by a commit of a leader whose
# term has expired (a commit takes milliseconds, a renewal less): end that leader's
# sessions. Also the most a renewal waits behind one of its own leader's commits.
ROW_LOCK_WAIT_S = 0.5
# Presence rows the leader deletes: schedulers unseen this long are gone.
FORGET_AFTER_S = 60.0

_SECONDS = "make_interval(secs => $3::float8)"
ACQUIRE = f"""
WITH locked AS (SELECT id FROM corral_leader WHERE id = 1 FOR UPDATE)
UPDATE corral_leader SET term = term + 1, holder = $1, address = $2,
    expires_at = clock_timestamp() + {_SECONDS}
WHERE id = (SELECT id FROM locked)
    AND (expires_at < clock_timestamp() OR ($4::bool AND address = $2))
RETURNING term
"""
RENEW = f"""
UPDATE corral_leader SET expires_at = clock_timestamp() + {_SECONDS}
WHERE id = 1 AND term = $1 AND holder = $2 AND expires_at > clock_timestamp()
"""
RESIGN = """
UPDATE corral_leader SET expires_at = '-infinity'
WHERE id = 1 AND term = $1 AND holder = $2
"""
LEADER = """
SELECT term, coalesce(address, ''), expires_at > clock_timestamp() FROM corral_leader
WHERE id = 1
"""
FENCE = "SELECT term, expires_at > clock_timestamp() FROM corral_leader WHERE id = 1 FOR KEY SHARE"
# Who holds a term an acquire may take (as ACQUIRE's condition): the sessions to end.
STALE_HOLDER = """
SELECT holder, term FROM corral_leader
WHERE id = 1 AND (expires_at < clock_timestamp() OR ($2::bool AND address = $1))
"""
END_SESSIONS = """
SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
WHERE datname = current_database() AND application_name = $1 AND pid <> pg_backend_pid()
"""
BEAT = """
INSERT INTO corral_schedulers (name, address, role, seen_at)
VALUES ($1, $2, $3, clock_timestamp())
ON CONFLICT (name) DO UPDATE
SET address = excluded.address, role = excluded.role, seen_at = excluded.seen_at
"""
FORGET = """
DELETE FROM corral_schedulers WHERE seen_at < clock_timestamp() - make_interval(secs => $1)
"""
PEERS = """
SELECT name, address, role, extract(epoch FROM clock_timestamp() - seen_at)::float8
FROM corral_schedulers WHERE seen_at > clock_timestamp() - make_interval(secs => $1)
ORDER BY address, name
"""
LEAVE = "DELETE FROM corral_schedulers WHERE name = $1"


class RowLocked(StoreError):
    """Raised when a statement on the leader row waited ``ROW_LOCK_WAIT_S`` for a lock
    (a commit of the leader holds it; for a renewal, one of the leader's own)."""


async def fence(conn: asyncpg.Connection, term: int, where: str) -> None:
    """The first statement of a commit transaction of the leader of ``term``: raise
    NotLeaderAnymore (the caller's transaction rolls back) unless it still leads."""
    row = await conn.fetchrow(FENCE)
    if row is not None and row[0] == term and row[1]:
        return
    now = "its term expired" if row is not None and row[0] == term else "another took over"
    if row is not None and row[0] != term:
        now = f"term {row[0]} began"
    raise NotLeaderAnymore(
        where, term, f"commit refused: this scheduler led with term {term}, but {now}"
    )


class PostgresElection:
    """One scheduler's side of the election (see ``election.Election``), on a session of
    its own: ``name`` is the scheduler, ``address`` where it listens, ``ttl`` the seconds
    a term lasts without renewal; ``row_lock_wait``, see ``ROW_LOCK_WAIT_S``. ``open``
    also brings the schema up to date."""

    def __init__(
        self,
        dsn: str,
        name: str,
        address: str,
        ttl: float,
        row_lock_wait: float = ROW_LOCK_WAIT_S,
    ) -> None:
        self.dsn, self.name, self.address, self.ttl = dsn, name, address, ttl
        self.row_lock_wait = row_lock_wait
        self.target = pgconn.Target(dsn)
        self.where = f"database {self.target.dsn}"
        self._conn: asyncpg.Connection | None = None
        # One statement at a time on the session: a resign (a clean stop) while the term's
        # renewal is still on it waits for it instead of failing beside it.
        self._session = asyncio.Lock()
        self.database_id = ""  # the database's identity, read by ``open``
        # The last term this session acquired (0: none): ``leave`` resigns it, in case the
        # process is stopping with a term it took but never served (a stop that raced the
        # acquisition's answer).
        self.acquired = 0

    async def open(self) -> None:
        """Connect and upgrade the schema; StoreError (one line) on failure."""
        conn = await self._connection()
        async with pgconn.translated(self.target, "upgrade"):
            upgraded = await migrate(conn, self.where)
            self.database_id = await conn.fetchval(DATABASE_ID)
        if upgraded is not None:
            log.warning("upgraded %s from schema %d to %d", self.where, *upgraded)

    async def _connection(self) -> asyncpg.Connection:
        if self._conn is None or self._conn.is_closed():
            self._conn = await pgconn.connect(
                self.dsn,
                self.target,
                self.name,
                {"lock_timeout": f"{round(self.row_lock_wait * 1000)}ms"},
            )
        return self._conn

    async def _run(self, doing: str, method: str, sql: str, *args: Any) -> Any:
        """``conn.<method>(sql, *args)`` on the election's session; errors become one
        StoreError (RowLocked for a lock wait past ``ROW_LOCK_WAIT_S``). A session found
        closed, or left mid-statement by a cancellation or any failure other than the
        server's own answer, is replaced at the next call.
        Calls from several tasks take turns (``_session``)."""
        async with self._session:
            conn = await self._connection()
            async with pgconn.translated(self.target, doing):
                try:
                    return await getattr(conn, method)(sql, *args)
                except asyncpg.LockNotAvailableError:
                    why = f"the leader row stayed locked ({doing})"
                    raise RowLocked(self.where, why) from None
                except asyncpg.PostgresError:
                    raise  # the server answered: the session is ready for the next one
                except BaseException:
                    # Cancelled, timed out, or broken mid-statement: asyncpg may still be
                    # in that statement ("another operation is in progress"), so the
                    # session is replaced rather than reused.
                    conn.terminate()
                    raise

    async def acquire(self, *, reclaim: bool = False) -> int | None:
        for _ in range(2):
            try:
                term: int | None = await self._run(
                    "elect", "fetchval", ACQUIRE, self.name, self.address, self.ttl, reclaim
                )
                if term is not None:
                    self.acquired = term
                return term
            except RowLocked:
                if not await self._end_stale_holder(reclaim):
                    return None
        return None

    async def _end_stale_holder(self, reclaim: bool) -> bool:
        """After an acquire waited on the row lock of a holder whose term it may take:
        end that holder's sessions (see the module docstring); True if any was ended."""
        row = await self._run("elect", "fetchrow", STALE_HOLDER, self.address, reclaim)
        if row is None or not row[0] or row[0] == self.name:
            return False
        try:
            ended: int = await self._run(
                "elect", "fetchval", END_SESSIONS, pgconn.application_name(row[0])
            )
        except StoreError as exc:
            log.warning("cannot end the sessions of the expired leader %s: %s", row[0], exc)
            return False
        log.warning(
            "the leader of expired term %d (%s) held the leader row in an unfinished commit: "
            "ended %d session(s) of it",
            row[1],
            row[0],
            ended,
        )
        return ended > 0

    async def renew(self, term: int) -> bool:
        status = await self._run("renew", "execute", RENEW, term, self.name, self.ttl)
        return bool(status == "UPDATE 1")

    async def resign(self, term: int) -> None:
        await self._run("resign", "execute", RESIGN, term, self.name)

    async def leader(self) -> LeaderRecord:
        row = await self._run("read", "fetchrow", LEADER)
        return LeaderRecord(row[0], row[1], row[2])

    async def beat(self, role: str) -> None:
        await self._run("beat", "execute", BEAT, self.name, self.address, role)
        if role == "leader":
            await self._run("beat", "execute", FORGET, FORGET_AFTER_S)

    async def peers(self, seen_within: float) -> list[PeerRecord]:
        rows = await self._run("read", "fetch", PEERS, seen_within)
        return [PeerRecord(*row) for row in rows]

    async def leave(self) -> None:
        """At exit: resign the term last acquired, if still held, and remove the presence
        row (best effort)."""
        try:
            if self.acquired:
                await self.resign(self.acquired)
            await self._run("leave", "execute", LEAVE, self.name)
        except StoreError as exc:
            log.debug("could not remove the presence row: %s", exc)

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        await pgconn.close_quietly(conn)
