"""Real-time visibility on real processes: the event stream, progress, the status views,
the live terminal view under a pseudo-terminal, and a real Prometheus scrape."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import select
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
import zmq
from prometheus_client.parser import text_string_to_metric_families

from actors.client import AsyncClient, job_spec
from tests.e2e.test_cli import corral
from tests.helpers.cluster import ASYNC_TASKS, Cluster
from tests.helpers.procs import ROOT
from tests.helpers.waiting import until_running
from transport import protocol as wire

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def published_latency(samples: Samples) -> float | None:
    return samples.get(("corral_assignment_latency_seconds_count", ()))


async def scrape_until(port: int, ready: object, timeout: float = 30.0) -> Samples:
    """Scrape every 0.1 s until ``ready(samples)``; the last scrape either way."""
    deadline = time.monotonic() + timeout
    while True:
        samples = scrape(port)
        if ready(samples) or time.monotonic() > deadline:  # type: ignore[operator]
            return samples
        await asyncio.sleep(0.1)


def scrape(port: int) -> Samples:
    """A real HTTP scrape, parsed by prometheus-client's own text parser."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def collect(
    client: AsyncClient, until: object, subscribed: asyncio.Event, timeout: float = 30.0
) -> list[wire.Event]:
    """Events from ``client`` until ``until(events)``; ``subscribed`` is set once the
    subscription is sent (what this client sends after it, the scheduler reads after it)."""
    events: list[wire.Event] = []

    async def run() -> None:
        async for event in client.watch(subscribed=subscribed):
            events.append(event)
            if until(events):  # type: ignore[operator]
                return

    await asyncio.wait_for(run(), timeout)
    return events


async def test_a_subscriber_sees_every_transition_of_a_job_in_order_with_progress(
    cluster: Cluster,
) -> None:
    cluster.start()
    cluster.worker("w0", 2)
    async with cluster.client() as client:
        job_ids: list[int] = []

        def done(events: list[wire.Event]) -> bool:
            return any(
                e.kind == "job" and e.job_id in job_ids and e.status == "SUCCEEDED" for e in events
            )

        # One connection for both: the scheduler reads the subscription before the submission.
        subscribed = asyncio.Event()
        watching = asyncio.ensure_future(collect(client, done, subscribed))
        await subscribed.wait()
        job_ids.append(await client.submit("progressing", [4, 0.2]))
        events = await watching
    mine = [e for e in events if e.job_id == job_ids[0]]
    transitions = [e.status for e in mine if e.kind == "job"]
    assert transitions == ["PENDING", "QUEUED", "RUNNING", "SUCCEEDED"]
    # The worker sends the latest report per job at most 4 times a second: reports may be
    # merged (a loaded machine), never reordered, and the last one always arrives.
    progress = [e for e in mine if e.kind == "progress"]
    fractions = [p.fraction for p in progress]
    assert fractions == sorted(set(fractions)), fractions
    assert set(fractions) <= {0.25, 0.5, 0.75, 1.0}
    assert fractions[-1] == 1.0
    assert progress[-1].message == "step 4 of 4"
    kinds = [e.kind for e in mine]
    assert kinds.index("progress") > transitions.index("RUNNING")
    assert [e.seq for e in events] == sorted(e.seq for e in events)


async def test_a_killed_worker_goes_suspect_then_dead_and_its_job_is_requeued(
    cluster: Cluster,
) -> None:
    cluster.start()
    async with cluster.client() as client:
        job_ids: list[int] = []

        def done(events: list[wire.Event]) -> bool:
            return any(e.job_id in job_ids and e.status == "SUCCEEDED" for e in events)

        subscribed = asyncio.Event()
        watching = asyncio.ensure_future(collect(client, done, subscribed))
        await subscribed.wait()
        victim = cluster.worker("victim", 1)  # its hello comes after the subscription
        job_ids.append(await client.submit("bait", [30.0, 0.1]))
        await until_running(client, job_ids[0])
        victim.send_signal(signal.SIGKILL)
        cluster.worker("heir", 1)
        events = await watching
    health = [e.status for e in events if e.kind == "worker" and e.worker == "victim"]
    assert health[:2] == ["joined", "suspect"]
    assert "dead" in health
    assert health.index("dead") > health.index("suspect")
    job = [(e.status, e.worker) for e in events if e.kind == "job" and e.job_id == job_ids[0]]
    assert [s for s, _ in job] == [
        "PENDING",
        "QUEUED",
        "RUNNING",
        "PENDING",
        "QUEUED",
        "RUNNING",
        "SUCCEEDED",
    ]
    assert job[2][1] == "victim"
    assert job[5][1] == "heir"


async def test_status_json_and_once_report_the_counts_of_what_was_submitted(
    cluster: Cluster,
) -> None:
    cluster.start()
    cluster.worker("w0", 2, "--queues", "default,other")
    async with cluster.client() as client:
        ok = await client.submit_many([job_spec("record", [i]) for i in range(30)])
        bad = await client.submit_many([job_spec("fail_until", [9], max_retries=0)] * 5)
        await client.wait(ok + bad, timeout=30)
        later = await client.submit("record", ["later"], depends_on=[ok[0]], queue="nobody")
    address = cluster.address
    done = corral("status", "--json", "--connect", address)
    assert done.returncode == 0, done.stderr
    status = json.loads(done.stdout)
    assert status["jobs"]["SUCCEEDED"] == 30
    assert status["jobs"]["FAILED"] == 5
    assert status["dead_letters"] == 5
    assert status["jobs"]["QUEUED"] == 1, "the job on a queue nobody serves waits, ready"
    nobody = status["queues"]["nobody"]
    assert 0 <= nobody.pop("oldest_s") < 600, "waiting since it became ready, seconds ago"
    assert nobody == {
        "ready": 1,
        "high": 0,
        "normal": 1,
        "low": 0,
        "waiting_for_worker": 1,  # no connected worker serves "nobody"
        "oldest_job": later,
    }
    assert status["completed_last_minute"] == 35
    assert status["strategy"] == "priority"
    [worker] = status["workers"]
    assert (worker["name"], worker["state"], worker["slots"]) == ("w0", "alive", 2)
    once = corral("status", "--once", "--connect", address)
    assert once.returncode == 0, once.stderr
    for text in ("jobs by state", "ready queues", "nobody", "w0", "alive", "5 dead letter"):
        assert text in once.stdout
    workers = corral("workers", "--connect", address)
    assert "w0" in workers.stdout
    jobs = json.loads(corral("jobs", "--state", "failed", "--json", "--connect", address).stdout)
    assert sorted(j["job_id"] for j in jobs) == sorted(bad)


async def test_a_prometheus_scrape_parses_and_matches_the_work_done(cluster: Cluster) -> None:
    port = free_port()
    cluster.start("--metrics-port", str(port))
    cluster.worker("w0", 4)
    async with cluster.client() as client:
        ok = await client.submit_many([job_spec("record", [i], queue="default") for i in range(40)])
        retried = await client.submit("fail_until", [1], max_retries=2, backoff=(0.05, 1, 1))
        dead = await client.submit("fail_until", [9], max_retries=0)
        await client.wait([*ok, retried, dead], timeout=30)
    # Snapshots are published once a second: scrape until the last counts are in.
    samples = await scrape_until(
        port, lambda s: s.get(("corral_dead_letters", ())) == 1 and published_latency(s) == 43
    )
    q = (("queue", "default"),)
    assert samples[("corral_jobs_submitted_total", q)] == 42
    assert samples[("corral_jobs_succeeded_total", q)] == 41
    assert samples[("corral_jobs_failed_total", q)] == 1
    assert samples[("corral_jobs_retried_total", q)] == 1
    assert samples[("corral_dead_letters", ())] == 1
    assert samples[("corral_jobs", (("state", "SUCCEEDED"),))] == 41
    assert samples[("corral_workers", (("health", "alive"),))] == 1
    assert samples[("corral_assignment_latency_seconds_count", ())] == 43
    assert samples[("corral_store_commit_seconds_count", ())] >= 1
    assert ("corral_queue_depth", q) in samples
    for counter in (
        "unknown_peer_frames",
        "refused_heartbeats",
        "unheld_leases",
        "store_writes_ahead_of_bulk",  # one client submitting one job at a time
    ):
        assert samples[(f"corral_{counter}_total", ())] == 0


async def test_a_subscriber_that_never_reads_loses_events_not_throughput(cluster: Cluster) -> None:
    port = free_port()
    cluster.start("--metrics-port", str(port))
    cluster.worker("w0", 8, tasks=ASYNC_TASKS)  # quick jobs: the events are what counts
    stuck = zmq.Context.instance().socket(zmq.DEALER)
    stuck.setsockopt(zmq.LINGER, 0)
    stuck.setsockopt(zmq.RCVHWM, 10)
    stuck.connect(cluster.address)
    try:
        stuck.send(wire.encode(wire.ClientHello(wire.PROTOCOL_VERSION)))
        stuck.send(wire.encode(wire.Subscribe(1)))  # ...and never acknowledges a frame
        async with cluster.client() as client:
            await asyncio.sleep(0.2)
            ids = await client.submit_many([job_spec("async.echo", [i]) for i in range(20_000)])
            outcomes = await client.wait(ids, timeout=120)
            status = await client.status()
            # Until the hub has counted them (it hears of each commit after the client).
            samples = await scrape_until(
                port, lambda s: s.get(("corral_events_dropped_total", ()), 0) > 10_000
            )
    finally:
        stuck.close()
    assert {o.status for o in outcomes.values()} == {"SUCCEEDED"}
    assert status.jobs["SUCCEEDED"] == 20_000
    # 4 transitions per job = 80,000 events: far more than the stuck subscriber's window
    # and bounded buffer hold, so most were dropped, counted, and nothing waited for it.
    assert samples[("corral_events_dropped_total", ())] > 10_000


def test_the_live_view_renders_under_a_pseudo_terminal(cluster: Cluster) -> None:
    cluster.start()
    cluster.worker("w0", 2)
    address = cluster.address
    pid, fd = pty.fork()
    if pid == 0:  # the child: corral status, live, in a terminal
        os.environ.update({"COLUMNS": "120", "LINES": "40", "TERM": "xterm"})
        os.chdir(ROOT)
        os.execv(
            sys.executable,
            [
                sys.executable,
                "-m",
                "actors.cli",
                "status",
                "--interval",
                "0.2",
                "--connect",
                address,
            ],
        )
    output = b""
    subprocess.run(
        [sys.executable, "-m", "actors.cli", "submit", "record", "[1]", "--connect", address],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )

    def seen_enough() -> bool:
        return b"jobs by state" in output and b"w0" in output and output.count(b"\x1b[") > 10

    deadline = time.monotonic() + 30  # generous: a busy machine starts Python slowly
    while time.monotonic() < deadline and not seen_enough():
        ready, _, _ = select.select([fd], [], [], 0.5)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            break
        output += chunk
    os.kill(pid, signal.SIGINT)
    _, status = os.waitpid(pid, 0)
    text = output.decode(errors="replace")
    assert "Traceback" not in text
    assert text.count("jobs by state") >= 1
    assert "w0" in text
    assert output.count(b"\x1b[") > 10, "it redrew itself (cursor moves) several times"
    assert os.WIFEXITED(status)
    assert os.WEXITSTATUS(status) == 0
