"""A task that declares its own rate limit (``@task(rate_limit=...)``), for the tests of
declared limits: its workers tell the scheduler, which holds every job of it to the rate.
Each execution writes start and end lines in the ledger (tests.helpers.ledger)."""

from __future__ import annotations

from actors import task
from tests.helpers.ledger import event as _event

RATE, PER_S, BURST = "20/s", 20, 5


@task(name="metered", rate_limit=RATE, rate_burst=BURST)
def metered(value: int = 0) -> int:
    _event("start", value=value)
    _event("end", value=value)
    return value
