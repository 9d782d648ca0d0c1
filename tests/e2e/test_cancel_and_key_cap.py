"""Cancelling a running job frees its concurrency key's slot only once its handler has
stopped, on real processes: the cancel answers at once, but the next job of a key capped
at 1 waits while the cancelled handler still runs, and starts as soon as the worker has
stopped it. Two ways a handler outlives its cancel: a process-pool worker whose agent is
paused (its pool child works on until the agent can kill it), and a thread-pool handler
inside one long C call (a thread stops only at its next bytecode)."""

from __future__ import annotations

import signal
import time

import pytest

from tests.helpers.cluster import Cluster
from tests.helpers.overlap import executions, most_at_once
from tests.helpers.waiting import until, until_workers

pytestmark = pytest.mark.slow

TICKS_AFTER_CANCEL = 15  # the cancelled handler's ticks (20 ms apart) seen before resuming
NAP_S = 2.0  # the thread-pool handler's one C call


async def test_a_paused_agents_cancelled_handler_holds_its_keys_slot_until_it_has_stopped(
    cluster: Cluster,
) -> None:
    # A lease long enough that the pause below ends well within it: only the worker's
    # own stop, not a lapsed lease, ends the cancelled handler.
    cluster.start("--lease", "5", "--lease-grace", "1")
    for name in ("w0", "w1"):
        cluster.worker(name, 1, "--pool", "process")
    async with cluster.client() as client:
        await until_workers(client, {"w0", "w1"})
        first = await client.submit(
            "scribble", [30.0], concurrency_key="acme", max_concurrent=1, max_retries=0
        )
        ids = {first}

        async def ticking() -> bool:
            return any(not r["ended"] for r in executions(cluster.ledger, ids))

        await until(ticking, timeout=30)
        second = await client.submit(
            "scribble", [0.1], concurrency_key="acme", max_concurrent=1, max_retries=0
        )
        ids.add(second)
        view = await client.job(first)
        assert view is not None
        assert view.worker is not None
        agent = cluster.workers[view.worker]
        agent.send_signal(signal.SIGSTOP)  # the agent only: its pool child works on
        try:
            assert await client.cancel([first]) == {first: "CANCELLED"}
            cancelled_at = time.time()

            async def ran_on() -> bool:
                [run] = executions(cluster.ledger, {first})
                return bool(run["last"] > cancelled_at + TICKS_AFTER_CANCEL * 0.02)

            await until(ran_on, timeout=30)
            waiting = await client.job(second)
            assert waiting is not None
            assert waiting.status == "QUEUED", "the key's slot is free while the handler runs"
        finally:
            agent.send_signal(signal.SIGCONT)
        outcomes = await client.wait([second], timeout=60)
        assert outcomes[second].status == "SUCCEEDED", "the slot came back once it stopped"
    runs = executions(cluster.ledger, ids)
    most, at = most_at_once(runs)
    assert most == 1, f"two jobs of a key capped at 1 ran at once, at {at}: {runs}"
    [stopped] = [r for r in runs if r["job"] == first]
    [later] = [r for r in runs if r["job"] == second]
    assert not stopped["ended"], "the cancelled handler was stopped, not left to finish"
    assert later["first"] > stopped["last"]


async def test_a_thread_in_one_long_call_holds_its_keys_slot_until_the_call_returns(
    cluster: Cluster,
) -> None:
    cluster.start("--lease", "5", "--lease-grace", "1")
    for name in ("w0", "w1"):
        cluster.worker(name, 1, "--pool", "thread")
    async with cluster.client() as client:
        await until_workers(client, {"w0", "w1"})
        first = await client.submit(
            "nap", [NAP_S], concurrency_key="acme", max_concurrent=1, max_retries=0
        )

        async def napping() -> bool:
            return bool(executions(cluster.ledger, {first}))

        await until(napping, timeout=30)
        second = await client.submit(
            "scribble", [0.1], concurrency_key="acme", max_concurrent=1, max_retries=0
        )
        assert await client.cancel([first]) == {first: "CANCELLED"}
        outcomes = await client.wait([second], timeout=60)
        assert outcomes[second].status == "SUCCEEDED"
    [napped] = executions(cluster.ledger, {first})
    [later] = executions(cluster.ledger, {second})
    # The nap's own start line is written just before its sleep: the sleep ends no sooner
    # than NAP_S after it, and only then can the thread stop.
    assert later["first"] >= napped["first"] + NAP_S, (napped, later)
