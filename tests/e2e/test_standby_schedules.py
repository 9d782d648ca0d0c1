"""A schedule on PostgreSQL with standby schedulers (issue 17): the leader is SIGKILLed while
an `--every 1s --missed all` schedule fires, a standby takes over, and every fire time from
the first to the last ran exactly once: none twice (each fire time's job commits with the
schedule's advance, under the leader's term, keyed schedule:NAME:FIRE_TIME), none lost (the
new leader fires the ones that passed during the takeover, as the policy says)."""

from __future__ import annotations

import signal
import time

import pytest

from actors.client import AsyncClient
from tests.e2e.test_schedules import fired_after, fires, once_each
from tests.helpers.cluster import LEDGER_TASKS
from tests.helpers.leaders import until_leading, until_standby_names
from tests.helpers.procs import Procs, corral, free_address
from tests.helpers.waiting import until, until_workers

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("leaders")]  # see ./dev test


async def test_a_schedule_fires_once_per_fire_time_across_a_leader_sigkill(
    procs: Procs, postgres_dsn: str
) -> None:
    addresses = [free_address() for _ in range(3)]
    first = addresses[0]
    schedulers = {first: procs.scheduler(first, postgres_dsn)}
    await until_leading([first])
    for standby in addresses[1:]:
        schedulers[standby] = procs.scheduler(standby, postgres_dsn)
        await until_standby_names(standby, first)
    everyone = ",".join(reversed(addresses))
    procs.spawn("w1", "worker", LEDGER_TASKS, "--connect", everyone, "--name", "w1")
    ledger = str(procs.ledger)
    async with AsyncClient(addresses, connect_timeout=10) as client:
        await until_workers(client, {"w1"})
    added = corral(
        "schedule", "add", "tick", "stamp", "--every", "1s", "--missed", "all",
        "--connect", everyone,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    await until(lambda: _fired(ledger, 3))

    killed = time.time()
    schedulers.pop(first).send_signal(signal.SIGKILL)
    leader, term, _ = await until_leading(list(schedulers), above=1)
    assert term == 2
    led = time.time()
    await until(lambda: fired_after(ledger, "tick", led + 3), timeout=30)
    shown = corral("schedule", "list", "--connect", everyone)
    assert shown.returncode == 0, shown.stderr
    assert "tick" in shown.stdout

    times = once_each(ledger, "tick")
    assert times == list(range(times[0], times[-1] + 1)), "every second once, none lost"
    across = [t for t in times if t > killed]
    assert across, "fired after the takeover"
    print(f"{len(times)} fire times once each; the new leader {leader} fired {len(across)}")


async def _fired(ledger: str, n: int) -> bool:
    return len(fires(ledger, "tick")) >= n
