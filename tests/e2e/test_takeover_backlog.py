"""A standby takes over a leader with a large backlog, on real processes. The new leader
loads every live job while it already holds the term, and renews the term on the same
event loop. The load used to hold that loop for seconds at a time (the rows turned into
jobs in one go, the strategy queueing them all in one go, and the cyclic GC's full
collections of a fast-growing heap): at 400,000 queued jobs and the default --leader-ttl of
2 s the term lapsed by the scheduler's own clock before the load was done, every time, so
each standby took a term, loaded, lost it and took the next, and nobody ever led again
(found by the chaos bench, bench/leaders.py, where a loaded machine did the same to a
16,000-job backlog: three terms lost in a row, 12.7 s to a new leader)."""

from __future__ import annotations

import signal

import asyncpg
import pytest

from actors.client import AsyncClient, job_spec
from tests.helpers.leaders import until_leading, until_standby_names
from tests.helpers.procs import Procs, free_address

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("leaders")]  # see ./dev test

BACKLOG = 400_000


async def clone_job(dsn: str, job_id: int, copies: int) -> None:
    """``copies`` more rows like the committed job ``job_id``, under the next ids, in one
    statement: what the next leader loads is the same as if the leader had been sent
    ``BACKLOG`` such jobs, whose submission through one scheduler took about 30 s of the
    test's 45 s (and most of its CPU, beside the other tests of a -n 4 run)."""
    conn = await asyncpg.connect(dsn)
    try:
        columns = [
            row["column_name"]
            for row in await conn.fetch(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_name = 'jobs' ORDER BY ordinal_position"
            )
        ]
        picked = ", ".join("n" if c == "id" else c for c in columns)
        await conn.execute(
            f"INSERT INTO jobs ({', '.join(columns)}) SELECT {picked} FROM jobs, "
            "generate_series($1::bigint, $2::bigint) AS n WHERE id = $3",
            job_id + 1,
            job_id + copies,
            job_id,
        )
    finally:
        await conn.close()


@pytest.mark.timeout(300)
async def test_a_standby_takes_over_a_leader_with_400_000_queued_jobs_and_keeps_its_term(
    procs: Procs, postgres_dsn: str
) -> None:
    a, b = free_address(), free_address()
    leader = procs.scheduler(a, postgres_dsn)
    await until_leading([a])
    async with AsyncClient(a, connect_timeout=10, request_timeout=120) as client:
        # No worker runs "idle": every job stays QUEUED, for the next leader to load.
        [first] = await client.submit_many([job_spec("idle")])
    await clone_job(postgres_dsn, first, BACKLOG - 1)
    standby = procs.scheduler(b, postgres_dsn)
    await until_standby_names(b, a)
    leader.send_signal(signal.SIGKILL)
    _, term, _ = await until_leading([b], above=1, timeout=60)
    said = (procs.logs / f"scheduler-{procs.procs.index(standby)}.log").read_text()
    assert "stepped down" not in said, said[-2000:]
    assert term == 2, "the first term it took is the one it kept"
    async with AsyncClient(b, connect_timeout=10) as client:
        assert (await client.status()).jobs.get("QUEUED") == BACKLOG
