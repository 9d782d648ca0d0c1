"""A worker's leases on real processes: an assignment that waited in a paused worker's
socket never runs, a thread handler stops as soon as a paused worker resumes, an async
handler takes no step after it resumes, and a process-pool child stops on its own when its
agent is paused, or is gone before it could resume when paused with its agent. Fast
timings: heartbeat 0.2 s, lease 1.0 s, grace 0.4 s."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest

from actors.client import AsyncClient
from bench.children import family
from tests.helpers.cluster import Cluster
from tests.helpers.ledger_tasks import read_events, read_ledger
from tests.helpers.waiting import until, until_running

pytestmark = pytest.mark.slow

LEASE = 1.0  # FAST_TIMINGS


async def connected(client: AsyncClient, *names: str) -> None:
    async def ready() -> bool:
        alive = {w.name for w in (await client.status()).workers if w.state == "alive"}
        return set(names) <= alive

    await until(ready)


def ticks(cluster: Cluster, worker: str, job_id: int, token: int) -> list[float]:
    return sorted(
        e["at"]
        for e in read_events(cluster.ledger)
        if e["event"] == "tick" and (e["worker"], e["job"], e["token"]) == (worker, job_id, token)
    )


async def test_an_assignment_that_waited_in_a_paused_workers_socket_never_runs(
    cluster: Cluster,
) -> None:
    cluster.start()
    paused = cluster.worker("paused", 1)
    async with cluster.client() as client:
        await connected(client, "paused")
        paused.send_signal(signal.SIGSTOP)
        job_id = await client.submit("record", ["J"], max_retries=5)
        await until_running(client, job_id, "paused")  # its Assign went to the paused worker
        cluster.worker("rescuer", 1)
        assert await client.result(job_id, timeout=30) == "J"
        view = await client.job(job_id)
        assert view is not None
        assert view.worker == "rescuer"
        assert view.token >= 2

        paused.send_signal(signal.SIGCONT)

        async def read_its_socket() -> bool:
            ran = any(r["worker"] == "paused" for r in read_ledger(cluster.ledger))
            return ran or "stale assignment" in cluster.log("paused")

        await until(read_its_socket)
    assert [r for r in read_ledger(cluster.ledger) if r["worker"] == "paused"] == []


async def test_a_thread_handler_stops_as_soon_as_its_paused_worker_resumes(
    cluster: Cluster,
) -> None:
    cluster.start()
    zombie = cluster.worker("zombie", 1, "--pool", "thread")
    async with cluster.client() as client:
        job_id = await client.submit("scribble", [60.0], max_retries=5)
        await until_running(client, job_id, "zombie")

        async def writing() -> bool:
            return bool(ticks(cluster, "zombie", job_id, 1))

        await until(writing)
        zombie.send_signal(signal.SIGSTOP)

        async def reclaimed() -> bool:
            view = await client.job(job_id)
            return view is not None and (view.token, view.status) != (1, "RUNNING")

        await until(reclaimed)
        resumed_at = time.time()
        zombie.send_signal(signal.SIGCONT)

        async def fenced() -> bool:
            return "self-fencing" in cluster.log("zombie")

        await until(fenced)
    after = [t for t in ticks(cluster, "zombie", job_id, 1) if t > resumed_at]
    # A tick every 20 ms: five of them is the ~100 ms the fence may take after resuming.
    assert len(after) <= 5, f"{len(after)} ticks after resuming: the handler kept running"


async def _a_child_writing(cluster: Cluster) -> tuple[Any, int]:
    """An agent on the process pool whose child runs a 60 s handler, writing ticks."""
    cluster.start()
    agent = cluster.worker("agent", 1, "--pool", "process")
    async with cluster.client() as client:
        job_id = await client.submit("scribble", [60.0], max_retries=5)

    async def writing() -> bool:
        return bool(ticks(cluster, "agent", job_id, 1))

    await until(writing)
    return agent, job_id


async def _until_the_child_stops_writing(cluster: Cluster, job_id: int) -> float:
    """When the child's last tick was, once it has written none for half a second."""

    async def stopped_writing() -> bool:
        return time.time() - ticks(cluster, "agent", job_id, 1)[-1] > 0.5

    await until(stopped_writing, timeout=10)
    return ticks(cluster, "agent", job_id, 1)[-1]


async def test_a_process_child_stops_by_itself_when_its_agent_is_paused(cluster: Cluster) -> None:
    agent, job_id = await _a_child_writing(cluster)
    paused_at = time.time()
    agent.send_signal(signal.SIGSTOP)
    try:
        last = await _until_the_child_stops_writing(cluster, job_id)
    finally:
        agent.send_signal(signal.SIGCONT)
    assert last - paused_at <= LEASE + 0.5, "the child outlived its lease"


async def test_a_handler_holding_its_childs_gil_within_the_lease_keeps_it(
    cluster: Cluster,
) -> None:
    """On the default pool the agent's heartbeats go on while a handler holds its child's
    GIL in one C call; the child's timer stays where it was armed (its watchdog cannot run),
    which a hold shorter than the lease never reaches."""
    cluster.start("--lease", "4")
    cluster.worker("holder", 1)  # the default pool
    async with cluster.client() as client:
        job_id = await client.submit("gil_hold", [1], max_retries=2)
        assert await client.result(job_id, timeout=60) == 1, "never reclaimed: token 1"
        view = await client.job(job_id)
    assert view is not None
    assert view.attempts == 1
    assert len(read_ledger(cluster.ledger)) == 1


async def test_a_handler_holding_its_childs_gil_past_the_lease_is_stopped_saying_why(
    cluster: Cluster,
) -> None:
    """Its child's kernel timer fires at the expiry armed before the hold: the child cannot
    tell a hold from a pause, and a paused child must be gone at its expiry."""
    cluster.start()
    cluster.worker("holder", 1)
    async with cluster.client() as client:
        job_id = await client.submit("gil_hold", [3], max_retries=0)
        outcome = (await client.wait([job_id], timeout=60))[job_id]
    assert outcome.status == "FAILED"
    assert "held its GIL" in (outcome.error or "")
    assert [r["end"] for r in read_ledger(cluster.ledger)] == [None], "it ran to its end"


async def test_a_killed_agents_process_child_stops_within_its_lease(cluster: Cluster) -> None:
    agent, job_id = await _a_child_writing(cluster)
    killed_at = time.time()
    agent.send_signal(signal.SIGKILL)
    # Usually within tens of ms (its parent, the fork server, goes with the agent and the
    # watchdog sees that); at the latest when its lease runs out, as for a paused agent.
    assert await _until_the_child_stops_writing(cluster, job_id) - killed_at <= LEASE + 0.5


def state_of(pid: int) -> str:
    """The process's state letter (``T`` stopped, ``Z`` dead, not yet reaped), or ``gone``."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return "gone"


@contextlib.contextmanager
def group_paused(agent: int, child: int) -> Iterator[list[float]]:
    """The agent's whole process family stopped (its pool child among them) for the block,
    then continued; yields a list that holds the time of the SIGCONT afterwards."""
    paused = family(agent)
    assert child in paused
    for pid in paused:
        os.kill(pid, signal.SIGSTOP)
    resumed: list[float] = []
    try:
        yield resumed
    finally:
        resumed.append(time.time())
        for pid in paused:
            with contextlib.suppress(ProcessLookupError):  # the child, reaped
                os.kill(pid, signal.SIGCONT)


async def until_rerun(client: AsyncClient, cluster: Cluster, job_id: int) -> None:
    """Until another worker's handler has started the job under a later token."""

    async def rerun() -> bool:
        events = read_events(cluster.ledger)
        return any(e["job"] == job_id and e["token"] > 1 and e["event"] == "start" for e in events)

    await until(rerun)


async def test_a_process_child_paused_with_its_agent_is_gone_before_it_could_resume(
    cluster: Cluster,
) -> None:
    """The whole worker paused (Ctrl-Z, a frozen container): its pool child's handler thread
    and watchdog thread would wake together on SIGCONT, and the handler often stepped first.
    The child's kernel timer ends it at its lease's expiry, while it is still stopped."""
    agent, job_id = await _a_child_writing(cluster)
    [child] = {e["pid"] for e in read_events(cluster.ledger) if e["job"] == job_id}
    with group_paused(agent.pid, child) as resumed:
        cluster.worker("rescuer", 1)
        async with cluster.client() as client:
            await until_rerun(client, cluster, job_id)
        # Dead while stopped (a zombie its stopped fork server has not reaped yet).
        assert state_of(child) in ("Z", "gone"), "the child outlived its lease while stopped"
    resumed_at = resumed[0]

    async def fenced() -> bool:
        return "self-fencing" in cluster.log("agent")

    await until(fenced)
    assert [t for t in ticks(cluster, "agent", job_id, 1) if t > resumed_at] == []


async def test_an_async_handler_takes_no_step_after_its_paused_worker_resumes(
    cluster: Cluster,
) -> None:
    """An async handler runs on the agent's own loop, whatever the pool: resumed past its
    lease, the loop has the handler's timer due before the fence loop's, and without a check
    the handler took its next step (and wrote) while another worker ran the job."""
    cluster.start()
    zombie = cluster.worker("zombie", 1)  # the default pool
    async with cluster.client() as client:
        job_id = await client.submit("ascribble", [60.0], max_retries=5)

        async def writing() -> bool:
            return bool(ticks(cluster, "zombie", job_id, 1))

        await until(writing)
        zombie.send_signal(signal.SIGSTOP)
        try:
            cluster.worker("rescuer", 1)
            await until_rerun(client, cluster, job_id)
        finally:
            resumed_at = time.time()
            zombie.send_signal(signal.SIGCONT)

        async def fenced() -> bool:
            return "self-fencing" in cluster.log("zombie")

        await until(fenced)
    assert [t for t in ticks(cluster, "zombie", job_id, 1) if t > resumed_at] == []


async def test_a_process_child_paused_with_its_agent_past_its_timeout_is_gone_before_resuming(
    cluster: Cluster,
) -> None:
    """The whole worker paused past a job's timeout but within its lease: its agent cannot
    stop the handler at the timeout, and on SIGCONT the handler stepped (and once finished)
    before the agent's timer ran. The child's kernel timer ends it at the timeout too."""
    cluster.start("--lease", "30", "--lease-grace", "5")  # the lease plays no part here
    agent = cluster.worker("agent", 1, "--pool", "process")
    async with cluster.client() as client:
        job_id = await client.submit("scribble", [60.0], timeout=1.0, max_retries=0)

        async def writing() -> bool:
            return bool(ticks(cluster, "agent", job_id, 1))

        await until(writing)
        [child] = {e["pid"] for e in read_events(cluster.ledger) if e["job"] == job_id}
        with group_paused(agent.pid, child) as resumed:

            async def ended() -> bool:  # dead while stopped: a zombie, or reaped
                return state_of(child) in ("Z", "gone")

            await until(ended, timeout=30)
        resumed_at = resumed[0]
        outcome = (await client.wait([job_id], timeout=30))[job_id]
        view = await client.job(job_id)
    assert outcome.status == "FAILED"
    assert view is not None
    assert [a.error for a in view.history] == ["timed out after 1s"]
    assert [t for t in ticks(cluster, "agent", job_id, 1) if t > resumed_at] == []
    first = min(ticks(cluster, "agent", job_id, 1))
    assert max(ticks(cluster, "agent", job_id, 1)) < first + 1.0 + 0.2, "no tick past it"
