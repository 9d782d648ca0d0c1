"""Delayed jobs (issue 17) on real processes: a job submitted with a delay or a time stays
PENDING until then and is never handed to a worker early (the ledger, which corral does not
write, says when each handler started), across a SIGKILL of the scheduler; it can be
cancelled while it waits; a delayed step waits for its parents and for its time; and a
retry after a restart still carries its parents' results."""

from __future__ import annotations

import json
import signal
import time

import pytest

from actors.client import AsyncClient, job_spec
from tests.helpers.cluster import Cluster
from tests.helpers.ledger_tasks import read_events, read_ledger
from tests.helpers.procs import corral
from tests.helpers.waiting import until, until_workers
from transport.views import JobView

pytestmark = pytest.mark.slow


def starts(ledger: str, job_id: int) -> list[float]:
    return [e["at"] for e in read_events(ledger) if e["job"] == job_id and e["event"] == "start"]


async def pending_if_asked_early(client: AsyncClient, job_id: int, due: float) -> JobView:
    """The job's view. Answered before ``due`` (our clock read less when the reply came),
    it must still be PENDING, waiting until ``due`` or later. Answered later, it may have
    started: a loaded machine may take seconds to get here (a restart, a command), and the
    ledger still says whether it started early. No fixed delay can stand in for this."""
    view = await client.job(job_id)
    answered = time.time()
    assert view is not None
    if answered < due:
        assert view.status == "PENDING", view
        assert view.not_before >= due, view
    return view


async def test_a_delayed_job_waits_pending_and_starts_no_sooner(cluster: Cluster) -> None:
    cluster.start(workers=1)
    async with cluster.client() as client:
        await until_workers(client, {"w0"})
        before = time.time()
        job_id = await client.submit("record", ["later"], delay=2.0)
        view = await pending_if_asked_early(client, job_id, before + 2.0)
        at_once = await client.submit("record", ["now"])
        assert await client.result(at_once, timeout=30) == "now"
        await pending_if_asked_early(client, job_id, before + 2.0)
        # The command's view of a waiting job, from one that surely still waits however
        # long the command takes to start on a loaded machine.
        waiting = await client.submit("record", ["much later"], delay=3600.0)
        shown = corral("job", str(waiting), "--connect", cluster.address)
        assert "waits to start until" in shown.stdout, shown.stdout
        assert await client.cancel([waiting]) == {waiting: "CANCELLED"}
        assert await client.result(job_id, timeout=30) == "later"
    [started] = starts(cluster.ledger, job_id)
    assert started >= max(view.not_before, before + 2.0), "never handed to a worker early"


async def test_a_delayed_job_survives_a_scheduler_crash_and_runs_once_at_its_time(
    cluster: Cluster,
) -> None:
    cluster.start(workers=1)
    async with cluster.client() as client:
        await until_workers(client, {"w0"})
        run_at = time.time() + 4.0
        job_id = await client.submit("record", ["after the crash"], run_at=run_at)
        cancelled = await client.submit("record", ["never"], delay=3.0)
        assert await client.cancel([cancelled]) == {cancelled: "CANCELLED"}
    cluster.restart_scheduler(signal.SIGKILL)
    async with cluster.client() as client:
        view = await pending_if_asked_early(client, job_id, run_at)
        if view.status == "PENDING":
            assert view.not_before == run_at, "its time, as submitted"
        assert await client.result(job_id, timeout=60) == "after the crash"
        await until(lambda: _settled(client, cancelled))
    assert [e["job"] for e in read_ledger(cluster.ledger)] == [job_id], "once, and not the other"
    [started] = starts(cluster.ledger, job_id)
    assert started >= run_at


async def _settled(client: object, job_id: int) -> bool:
    view = await client.job(job_id)  # type: ignore[attr-defined]
    return view is not None and view.status == "CANCELLED"


async def test_a_delayed_step_waits_for_its_parents_and_for_its_time(cluster: Cluster) -> None:
    cluster.start(workers=1)
    async with cluster.client() as client:
        await until_workers(client, {"w0"})
        first = job_spec("step", [1.0])
        second = job_spec("step", delay=2.0)
        _, steps = await client.submit_workflow({"a": (first, []), "b": (second, ["a"])})
        outcomes = await client.wait(steps.values(), timeout=60)
    assert {o.status for o in outcomes.values()} == {"SUCCEEDED"}
    [a_start] = starts(cluster.ledger, steps["a"])
    [b_start] = starts(cluster.ledger, steps["b"])
    view_b = [e for e in read_events(cluster.ledger) if e["job"] == steps["b"]]
    assert b_start >= a_start + 1.0, "after its parent"
    assert view_b


async def test_a_retry_after_a_restart_still_gets_its_parents_results(cluster: Cluster) -> None:
    cluster.start(workers=1)
    async with cluster.client() as client:
        await until_workers(client, {"w0"})
        first = job_spec("step")
        # Fails under token 1, then waits 4 s to retry: the scheduler is killed meanwhile.
        second = job_spec("step", kwargs={"fail_below_token": 1}, backoff=(4.0, 1.0, 4.0))
        _, steps = await client.submit_workflow({"a": (first, []), "b": (second, ["a"])})

        async def waiting_to_retry() -> bool:
            view = await client.job(steps["b"])
            return view is not None and view.status == "PENDING" and view.attempts == 1

        await until(waiting_to_retry, timeout=30)
    cluster.restart_scheduler(signal.SIGKILL)
    async with cluster.client() as client:
        result = await client.result(steps["b"], timeout=60)
    assert result["parents"] == {"a": {"step": "a", "parents": {}}}, json.dumps(result)


def test_the_command_line_takes_a_delay_or_a_time_and_refuses_nonsense(cluster: Cluster) -> None:
    cluster.start(workers=1)
    done = corral(
        "submit", "record", "[1]", "--delay", "1s", "--wait", "--connect", cluster.address
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[1:] == ["SUCCEEDED", "1"]
    past = corral(
        "submit", "record", "[2]", "--at", "2020-01-01T00:00:00Z", "--wait",
        "--connect", cluster.address,
    )  # fmt: skip
    assert past.returncode == 0, past.stderr
    for flag, value in (("--delay", "soon"), ("--delay", "-5s"), ("--at", "tomorrow")):
        bad = corral("submit", "record", "--connect", cluster.address, f"{flag}={value}")
        assert bad.returncode == 2
        lines = bad.stderr.strip().splitlines()
        assert len(lines) == 1, bad.stderr
        assert lines[0].startswith(f"corral: error: {flag}:"), lines
    year = corral("submit", "record", "--delay", "400d", "--connect", cluster.address)
    assert year.returncode == 2
    assert "--delay" in year.stderr
