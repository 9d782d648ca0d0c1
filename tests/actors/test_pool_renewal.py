"""A process-pool child's kernel timer follows its lease's renewals: a renewal that reaches
the agent just before the old expiry keeps the child alive (its watchdog moves the timer
only every 20 ms, so a timer armed at the expiry itself killed children renewed 3.5 to
13.5 ms before it). Real ProcessRunner, real children."""

from __future__ import annotations

import asyncio
import time

from actors.worker.process_pool import ProcessRunner
from actors.worker.tasks import JobContext
from transport import protocol as wire

LEDGER = "tests.helpers.ledger_tasks"  # the children import it: its "nap" sleeps


async def test_a_renewal_just_before_the_expiry_keeps_the_child() -> None:
    pool = ProcessRunner(1, [LEDGER])
    await pool.prepare()
    try:
        tested = 0
        for margin in [0.002, 0.005, 0.010, 0.015] * 5:
            expiry = [time.monotonic() + 0.4]
            ctx = JobContext(job_id=1, token=1, attempt=1, idempotency_key=None, worker="w")
            run = pool.start(1, "nap", [0.6], {}, ctx, lambda: expiry[0])  # noqa: B023
            await run.started
            await asyncio.sleep(max(0.0, expiry[0] - margin - time.monotonic()))
            in_time = time.monotonic() < expiry[0]  # a loaded machine may oversleep
            expiry[0] = time.monotonic() + 10.0  # an acknowledged heartbeat
            pool.renew()
            try:
                done = wire.unpack(await run.done)  # a child's value comes back encoded
            except asyncio.CancelledError:
                raise
            except BaseException:  # JobStopped, HandlerFailed: it was killed
                done = None
            await run.freed
            if in_time:
                assert done == 0.6, f"killed though renewed {margin * 1000:g} ms early"
                tested += 1
            if tested == 4:
                break
        assert tested == 4, "the renewals never came in time to test"
    finally:
        pool.close()
