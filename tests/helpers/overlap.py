"""How many executions of a set of jobs ran at once, from the ledger the test tasks keep
(tests/helpers/ledger.py), and whether any worked after the scheduler ended its attempt.

An execution (one handler run of one job under one token, in one process) runs from its
first ledger line to its last: ``start``, ``tick``s, ``end``. A handler the worker stopped
(self-fenced, timed out) writes no ``end``: its last line is the last sign of its work, so
tests of stopped handlers use a task that ticks (``scribble``). Counting such a run as
running for ever, as an earlier check did, shows N + (stopped runs) for a key capped at N.
"""

from __future__ import annotations

from typing import Any

from actors.client import AsyncClient
from tests.helpers.ledger_tasks import read_events


def executions(ledger: str, ids: set[int]) -> list[dict[str, Any]]:
    """Every execution of these jobs: job, token, worker, pid, its first and last line's
    time, and whether it wrote ``end``."""
    runs: dict[tuple[int, int, int], dict[str, Any]] = {}
    for e in read_events(ledger):
        if e["job"] not in ids:
            continue
        run = runs.setdefault(
            (e["job"], e["token"], e["pid"]),
            {"job": e["job"], "token": e["token"], "worker": e["worker"], "pid": e["pid"],
             "first": e["at"], "last": e["at"], "ended": False},
        )  # fmt: skip
        run["first"] = min(run["first"], e["at"])
        run["last"] = max(run["last"], e["at"])
        run["ended"] = run["ended"] or e["event"] == "end"
    return sorted(runs.values(), key=lambda r: r["first"])


def most_at_once(runs: list[dict[str, Any]]) -> tuple[int, float]:
    """The most executions between their first and last line at one instant, and when (a
    last line at the same instant as another's first counts as before it)."""
    points = sorted([(r["first"], 1) for r in runs] + [(r["last"], -1) for r in runs])
    most, at, running = 0, 0.0, 0
    for when, step in points:
        running += step
        if running > most:
            most, at = running, when
    return most, at


async def attempts_ended(client: AsyncClient, ids: set[int]) -> dict[tuple[int, int], float]:
    """When the scheduler recorded each attempt ended, by job and token (its clock: the
    tests' processes share the machine's)."""
    ended: dict[tuple[int, int], float] = {}
    for job_id in ids:
        view = await client.job(job_id)
        assert view is not None
        for attempt in view.history:
            if attempt.finished_at is not None:
                ended[(job_id, attempt.token)] = attempt.finished_at
    return ended


def late(runs: list[dict[str, Any]], ended: dict[tuple[int, int], float]) -> list[dict[str, Any]]:
    """Executions with a line written after the scheduler ended their attempt (and gave
    its key's slot to another job)."""
    return [
        {**r, "attempt_ended": ended[(r["job"], r["token"])]}
        for r in runs
        if (r["job"], r["token"]) in ended and r["last"] > ended[(r["job"], r["token"])]
    ]
