"""The PostgreSQL schema and its numbered upgrade steps, as in ``sqlite_schema``: the same
tables and the same ideas, in PostgreSQL's types (``bigint``, ``double precision``,
``bytea``, a ``bigint[]`` for a job's parents instead of a packed blob).

The schema is a list of numbered steps (``STEPS[0]`` is step 1); the one row of table
``corral_schema`` holds how many steps a database has had. ``migrate`` applies the missing
ones at start-up, all in one transaction (PostgreSQL's DDL is transactional), and refuses a
database newer than this code. To change the schema, append a step; never edit one that has
shipped (databases already ran it).
"""

from __future__ import annotations

import asyncpg

from actors.errors import StoreError

# Step 1: corral's schema 2 as SQLite has it, plus the version table.
_STEP_1 = """
CREATE TABLE corral_schema (version integer NOT NULL);
INSERT INTO corral_schema VALUES (0);
CREATE TABLE jobs (
    id bigint PRIMARY KEY,
    task text NOT NULL,
    args bytea NOT NULL,
    kwargs bytea NOT NULL,
    priority bigint NOT NULL,
    queue text NOT NULL,
    depends_on bigint[] NOT NULL,
    max_retries bigint NOT NULL,
    idempotency_key text,
    timeout double precision,
    created_at double precision NOT NULL,
    status text NOT NULL,
    attempts bigint NOT NULL,
    token bigint NOT NULL,
    worker text,
    started_at double precision,
    finished_at double precision,
    not_before double precision NOT NULL,
    result bytea,
    error text,
    backoff_base double precision,
    backoff_factor double precision,
    backoff_cap double precision,
    workflow_id bigint,
    step text
);
-- partial: most jobs have no key, and a UNIQUE column would index every NULL too
CREATE UNIQUE INDEX jobs_key ON jobs (idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX jobs_workflow ON jobs (workflow_id) WHERE workflow_id IS NOT NULL;
-- what a starting scheduler loads, and the dead letters `corral requeue --all-failed` reads
CREATE INDEX jobs_live ON jobs (id) WHERE status IN ('PENDING', 'QUEUED', 'RUNNING');
CREATE INDEX jobs_failed ON jobs (id) WHERE status = 'FAILED';
CREATE TABLE workflows (
    id bigint PRIMARY KEY,
    name text NOT NULL,
    idempotency_key text UNIQUE,
    created_at double precision NOT NULL
);
-- parent -> child, so a re-queued parent finds the descendants it revives
CREATE TABLE edges (
    parent bigint NOT NULL,
    child bigint NOT NULL,
    PRIMARY KEY (parent, child)
);
CREATE TABLE attempts (
    job_id bigint NOT NULL,
    token bigint NOT NULL,
    worker text,
    started_at double precision,
    finished_at double precision,
    outcome text NOT NULL,
    error text,
    PRIMARY KEY (job_id, token)
);
"""

# Step 2: several schedulers, one leader (issue 15). The leader row: the term only grows,
# ``holder`` is the leading scheduler's name, ``address`` where workers and clients reach
# it, ``expires_at`` when the term ends unless renewed (the database's clock). Inserted
# expired, so the first scheduler to start takes term 1. And the presence of every
# scheduler, leader or standby, for `corral status`.
_STEP_2 = """
CREATE TABLE corral_leader (
    id integer PRIMARY KEY CHECK (id = 1),
    term bigint NOT NULL,
    holder text,
    address text,
    expires_at timestamptz NOT NULL
);
INSERT INTO corral_leader VALUES (1, 0, NULL, NULL, '-infinity');
CREATE TABLE corral_schedulers (
    name text PRIMARY KEY,
    address text NOT NULL,
    role text NOT NULL,
    seen_at timestamptz NOT NULL
);
"""

# Step 3: the database's identity, as SQLite's step 3.
_STEP_3 = """
CREATE TABLE corral_meta (
    key text PRIMARY KEY,
    value text NOT NULL
);
INSERT INTO corral_meta VALUES ('database_id', replace(gen_random_uuid()::text, '-', ''));
"""

# Step 4: who submitted a job (issue 16): the public key of its client, so a client key
# reads, waits for and cancels only its own jobs ("": submitted without keys).
_STEP_4 = """
ALTER TABLE jobs ADD COLUMN owner text NOT NULL DEFAULT '';
"""

# Step 5: concurrency keys and rate limits (issue 17). A job's key and the cap it named,
# so a restart recounts the running jobs of each key; and the rate limits, each with its
# token bucket's state (``tat``, a Unix time: strategies.gates.Bucket), so a restart or a
# failover resumes every bucket where the last commit left it.
_STEP_5 = """
ALTER TABLE jobs ADD COLUMN concurrency_key text NOT NULL DEFAULT '';
ALTER TABLE jobs ADD COLUMN max_concurrent bigint NOT NULL DEFAULT 0;
CREATE TABLE limits (
    name text PRIMARY KEY,
    count bigint NOT NULL,
    period double precision NOT NULL,
    burst bigint NOT NULL,
    tat double precision NOT NULL DEFAULT 0
);
"""

# Step 6: schedules (issue 17), as SQLite's step 6.
_STEP_6 = """
CREATE TABLE schedules (
    name text PRIMARY KEY,
    spec bytea NOT NULL,
    owner text NOT NULL,
    created_at double precision NOT NULL,
    next_fire double precision,
    last_fire double precision,
    last_job bigint,
    skipped bigint NOT NULL,
    paused boolean NOT NULL
);
"""

# Step 7: finished jobs by status and finish time (issue 17, retention): the purge reads
# the oldest ones of each status from here instead of scanning the table. Partial, so a
# job is in it only once it has finished: the moves of running jobs never touch it.
_STEP_7 = """
CREATE INDEX jobs_finished ON jobs (status, finished_at)
    WHERE status IN ('SUCCEEDED', 'CANCELLED', 'UPSTREAM_FAILED', 'FAILED');
"""

# Step 8: who a rate limit comes from, as SQLite's step 8.
_STEP_8 = """
ALTER TABLE limits ADD COLUMN declared boolean NOT NULL DEFAULT false;
"""

STEPS: list[str] = [_STEP_1, _STEP_2, _STEP_3, _STEP_4, _STEP_5, _STEP_6, _STEP_7, _STEP_8]

# The database's identity (step 3).
DATABASE_ID = "SELECT value FROM corral_meta WHERE key = 'database_id'"

# The version a database has once every step ran.
SCHEMA_VERSION = len(STEPS)

# Schedulers starting together upgrade one after the other: each upgrade holds this
# transaction-level advisory lock (this key, "corr" in ASCII, and the hash of the schema's
# name). Transaction-level, so it ends with the upgrade, also behind a connection pooler.
UPGRADE_LOCK_KEY = 0x636F7272

# A job's columns, in the order ``postgres_rows.job_record`` and ``job_from_record`` use
# (the same names and order as SQLite's).
JOB_COLUMNS = (
    "id, task, args, kwargs, priority, queue, depends_on, max_retries, idempotency_key, "
    "timeout, created_at, status, attempts, token, worker, started_at, finished_at, "
    "not_before, result, error, backoff_base, backoff_factor, backoff_cap, workflow_id, step, "
    "owner, concurrency_key, max_concurrent"
)


async def migrate(conn: asyncpg.Connection, where: str) -> tuple[int, int] | None:
    """Bring the database on ``conn`` up to ``len(STEPS)``, in one transaction.

    Returns the versions it upgraded from and to, or None when it applied nothing (already
    current) or built a new, empty database. Raises StoreError, naming the database and both
    versions, for a database newer than this code and for one that has tables of its own
    but no corral version; any PostgreSQL error rolls the whole upgrade back (the caller
    turns it into one StoreError line). Another scheduler upgrading the same database
    waits for this one's transaction (``UPGRADE_LOCK_KEY``), then finds it current."""
    steps = list(STEPS)  # read at call time: tests append a step
    target = len(steps)
    async with conn.transaction():
        await conn.execute(
            "SELECT pg_advisory_xact_lock($1::int4, hashtext(current_schema()))", UPGRADE_LOCK_KEY
        )
        version = await _version(conn)
        if version > target:
            raise StoreError(
                where,
                f"{where} was written by a newer corral: schema {version}, this corral knows "
                f"up to {target}; upgrade corral or point --db at another database",
            )
        if version == 0 and await conn.fetchval(
            "SELECT count(*) FROM pg_catalog.pg_tables WHERE schemaname = current_schema()"
        ):
            # Tables but no version: another program's database. Not safe to build on.
            raise StoreError(
                where,
                f"{where} has tables but no corral schema version: it belongs to another "
                "program; point --db at a new, empty database",
            )
        for step in steps[version:]:
            await conn.execute(step)  # no parameters: PostgreSQL runs the whole script
        if version != target:
            await conn.execute("UPDATE corral_schema SET version = $1", target)
    return (version, target) if 0 < version < target else None


async def _version(conn: asyncpg.Connection) -> int:
    """The schema version of the database, 0 for one corral never wrote."""
    if not await conn.fetchval("SELECT to_regclass('corral_schema') IS NOT NULL"):
        return 0
    rows = await conn.fetch("SELECT version FROM corral_schema")
    return int(rows[0][0]) if len(rows) == 1 else 0
