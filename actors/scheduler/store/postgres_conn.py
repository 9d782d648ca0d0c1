"""The PostgreSQL store's connections: opening one with the settings the store relies on,
and turning asyncpg's and the network's errors into one clear StoreError line that names
the server, the user or the database at fault.

A scheduler holds two sessions: the store's (the group-commit actor in front of it sends
one operation at a time) and the election's (``postgres_leader``), so renewing the term
never waits behind a commit in the same session. Their settings: ``synchronous_commit`` at
least ``on`` (a commit returns once PostgreSQL flushed it, so an acknowledgement survives a
crash of the database server too); a statement that takes longer than
``COMMAND_TIMEOUT_S`` fails (the scheduler steps down with one line instead of hanging on
a dead link); server-side TCP keepalives, so the session of a scheduler whose machine died
ends in about ``KEEPALIVE_IDLE_S + 3 * KEEPALIVE_INTERVAL_S`` seconds, not the two hours of
the operating system's default; and an ``application_name`` naming the scheduler, by
which a new leader finds the sessions of a predecessor that still holds the leader row
past its term (``postgres_leader``).

Several schedulers share a database: one leads, the others stand by (the election in
``postgres_leader``; no session lock, which a connection pooler would not keep).
"""

from __future__ import annotations

import contextlib
import getpass
import os
import socket
import urllib.parse
from collections.abc import AsyncIterator

import asyncpg

from actors.config import redact_dsn
from actors.errors import StoreError, StoreFull

# A server that does not answer a connection attempt in this long is reported unreachable
# (a local one answers in milliseconds; a WAN link in well under a second).
CONNECT_TIMEOUT_S = 10.0
# The longest a statement may take: a 20,000-operation commit takes under a second here,
# so a minute only ever fires on a stalled server or link.
COMMAND_TIMEOUT_S = 60.0
# Server-side keepalives on the scheduler's connection (PostgreSQL lets a session set them).
KEEPALIVE_IDLE_S = 10
KEEPALIVE_INTERVAL_S = 3
# What every corral session calls itself, followed by the scheduler's name.
APPLICATION = "corral scheduler"


class Target:
    """Who and where a DSN names, for messages: user, host:port and database, with libpq's
    defaults (PG* variables, the login name, port 5432) where the DSN leaves them out."""

    def __init__(self, dsn: str) -> None:
        self.dsn = redact_dsn(dsn)
        parts = urllib.parse.urlsplit(dsn)
        query = dict(urllib.parse.parse_qsl(parts.query))
        netloc = parts.netloc.rpartition("@")
        userinfo, hosts = (netloc[0], netloc[2]) if netloc[1] else ("", netloc[2])
        self.user = (
            urllib.parse.unquote(userinfo.split(":", 1)[0])
            or query.get("user")
            or os.environ.get("PGUSER")
            or getpass.getuser()
        )
        host = hosts or query.get("host") or os.environ.get("PGHOST") or "localhost"
        if ":" not in host.rpartition("]")[2] and "," not in host:
            host += f":{query.get('port') or os.environ.get('PGPORT') or 5432}"
        self.server = host
        self.database = (
            urllib.parse.unquote(parts.path.lstrip("/"))
            or query.get("dbname")
            or query.get("database")
            or os.environ.get("PGDATABASE")
            or self.user
        )


def application_name(name: str) -> str:
    """The ``application_name`` of the sessions of the scheduler called ``name``."""
    return f"{APPLICATION} {name}" if name else APPLICATION


async def connect(
    dsn: str, target: Target, name: str = "", settings: dict[str, str] | None = None
) -> asyncpg.Connection:
    """A connection with the store's settings (see the module docstring) and ``settings``,
    for the scheduler called ``name``; or StoreError."""
    settings = {
        **(settings or {}),
        "application_name": application_name(name),
        "tcp_keepalives_idle": str(KEEPALIVE_IDLE_S),
        "tcp_keepalives_interval": str(KEEPALIVE_INTERVAL_S),
        "tcp_keepalives_count": "3",
    }
    try:
        conn = await asyncpg.connect(
            dsn,
            timeout=CONNECT_TIMEOUT_S,
            command_timeout=COMMAND_TIMEOUT_S,
            server_settings=settings,
        )
    except Exception as exc:
        raise translate(exc, target, "connect") from None
    try:
        # Leave a stronger setting (remote_write, remote_apply) as the administrator chose.
        if await conn.fetchval("SHOW synchronous_commit") in ("off", "local"):
            await conn.execute("SET synchronous_commit = on")
    except BaseException as exc:
        await close_quietly(conn)
        if isinstance(exc, Exception):
            raise translate(exc, target, "connect") from None
        raise
    return conn


async def close_quietly(conn: asyncpg.Connection | None) -> None:
    """Close ``conn`` (politely for a second, then by force); never raises."""
    if conn is None or conn.is_closed():
        return
    try:
        await conn.close(timeout=1.0)
    except Exception:
        conn.terminate()


def lost(target: Target, doing: str, why: str = "") -> StoreError:
    return StoreError(
        target.dsn,
        f"lost the connection to PostgreSQL at {target.server} while {doing}"
        f"{f' ({why})' if why else ''}; acknowledging nothing more",
    )


# While reading or writing, these mean the session is gone.
_GONE = (
    OSError,
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.OperatorInterventionError,  # terminated by an administrator, server shutdown
    asyncpg.InternalClientError,  # the session is in a state asyncpg cannot follow
)


def _gone(exc: BaseException) -> bool:
    return isinstance(exc, _GONE) or (
        isinstance(exc, asyncpg.InterfaceError) and "connection is closed" in str(exc)
    )


def translate(exc: BaseException, target: Target, doing: str) -> StoreError:
    """One StoreError naming the cause, for an error from asyncpg, PostgreSQL or the OS
    while ``doing`` ("connect", "write", "read", "upgrade")."""
    if isinstance(exc, StoreError):
        return exc
    server, user, db = target.server, target.user, target.database
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    at = f"PostgreSQL at {server}"
    fix = "check --db / CORRAL_DB"
    message: str
    if isinstance(exc, ValueError | asyncpg.ClientConfigurationError) and doing == "connect":
        message = f"bad PostgreSQL DSN {target.dsn}: {text}"
    elif isinstance(exc, TimeoutError) and doing == "connect":
        message = f"cannot reach {at}: no answer within {CONNECT_TIMEOUT_S:g} s; {fix}"
    elif isinstance(exc, TimeoutError):
        message = (
            f"{at} did not answer within {COMMAND_TIMEOUT_S:g} s while trying to {doing}; "
            "acknowledging nothing more"
        )
    elif _gone(exc) and doing != "connect":
        return lost(target, f"trying to {doing}", text)
    elif isinstance(exc, socket.gaierror):
        message = f"cannot reach {at}: unknown host ({text}); {fix}"
    elif isinstance(exc, ConnectionRefusedError):
        message = f"cannot reach {at}: connection refused (is PostgreSQL running there?); {fix}"
    elif isinstance(exc, OSError):
        message = f"cannot reach {at}: {exc.strerror or text}; {fix}"
    elif isinstance(exc, asyncpg.InvalidPasswordError):
        message = f"{at} refused user {user}: wrong password ({text}); {fix} or PGPASSWORD"
    elif isinstance(exc, asyncpg.InvalidAuthorizationSpecificationError):
        message = f"{at} refused user {user}: {text}; {fix}"
    elif isinstance(exc, asyncpg.InvalidCatalogNameError):
        message = (
            f"database {db} does not exist on {at}: create it (createdb {db}, or "
            f"CREATE DATABASE {db}) or {fix}"
        )
    elif isinstance(exc, asyncpg.InsufficientPrivilegeError):
        message = (
            f"user {user} may not {doing} database {db} on {at}: {text} (corral creates its "
            "tables at first start: make the user the database's owner, or GRANT CREATE)"
        )
    elif isinstance(exc, asyncpg.DiskFullError):
        return StoreFull(
            target.dsn,
            f"{at} is out of disk space ({text}); nothing more was acknowledged; free space, "
            "then restart",
        )
    elif isinstance(exc, asyncpg.ReadOnlySQLTransactionError):
        message = f"{at} is read-only (a standby?): {text}; point --db at the primary"
    elif isinstance(exc, asyncpg.PostgresConnectionError | asyncpg.OperatorInterventionError):
        message = f"{at} is not accepting connections: {text}"
    else:
        message = f"{at} failed to {doing} database {db}: {text}"
    return StoreError(target.dsn, message)


# What a statement may raise besides a bug: PostgreSQL's errors, the client's, the network's.
# (InternalClientError: asyncpg lost track of the session, e.g. after the server ended it.)
ERRORS = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
    TimeoutError,
)


@contextlib.asynccontextmanager
async def translated(target: Target, doing: str) -> AsyncIterator[None]:
    """Turn any connection or PostgreSQL error inside into ``translate``'s StoreError."""
    try:
        yield
    except ERRORS as exc:
        raise translate(exc, target, doing) from None
