"""The allowances come back (issue 16): every way a job ends gives its owner's jobs and
bytes in flight back (``JobTable.held``), and every wait answered leaves ``Quotas.waits``,
so a client whose jobs all ended is never refused for what it no longer holds. The
scheduler's actors on the in-memory store and transport, a worker in this process."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import pytest
import zmq.auth

from actors.client import AsyncClient, job_spec
from actors.config import SchedulerConfig
from actors.errors import JobFailed
from actors.keys import client_keys, keygen
from actors.scheduler.brain import Brain
from actors.scheduler.store.memory import MemoryStore
from actors.worker.agent import Worker
from tests.helpers.waiting import until, until_running
from transport import ClientKeys, connect
from transport import protocol as wire

_n = itertools.count()

# Handlers that block until the test opens their gate; tries per flaky key.
GATES: dict[str, asyncio.Event] = {}
TRIES: dict[str, int] = {}


def add(a: int, b: int) -> int:
    return a + b


def always_fails() -> None:
    raise ValueError("nope")


async def blocked(name: str) -> str:
    await GATES.setdefault(name, asyncio.Event()).wait()
    return name


async def sleeps(seconds: float) -> None:
    await asyncio.sleep(seconds)


def flaky(key: str, failures: int) -> str:
    """Fails its first ``failures`` runs (per key), then succeeds."""
    TRIES[key] = TRIES.get(key, 0) + 1
    if TRIES[key] <= failures:
        raise ValueError(f"{key}: try {TRIES[key]}")
    return key


TASKS: dict[str, Any] = {
    "add": add,
    "fails": always_fails,
    "blocked": blocked,
    "sleeps": sleeps,
    "flaky": flaky,
}


def config(keys: str = "") -> SchedulerConfig:
    return SchedulerConfig(
        bind=f"mem://quota-accounting-{next(_n)}",
        db="unused.db",
        backoff_base=0.01,
        backoff_cap=0.05,
        keys=keys,
    )


@dataclass
class Keys:
    """Without keys (every peer is owner ""), or a folder with a client, an admin and a
    worker key: the client owns the jobs, the admin re-queues them."""

    folder: str = ""
    files: dict[str, dict[str, str]] = field(default_factory=dict)  # role -> key/server_key
    owner: str = ""

    def client(self, address: str, role: str = "client") -> AsyncClient:
        return AsyncClient(address, **self.files.get(role, {}))

    def worker(self) -> ClientKeys | None:
        files = self.files.get("worker")
        return client_keys(files["key"], files["server_key"]) if files else None


@pytest.fixture(params=["no keys", "keys"])
def keys(request: pytest.FixtureRequest, tmp_path: Path) -> Keys:
    if request.param == "no keys":
        return Keys()
    folder = tmp_path / "keys"
    keygen("scheduler", folder)
    made = Keys(str(folder))
    for role, sub in (("client", "clients"), ("admin", "admins"), ("worker", "workers")):
        public, secret = keygen(role, tmp_path / "secrets")
        (folder / sub).mkdir()
        public.rename(folder / sub / public.name)
        server = str(folder / "scheduler.key")
        made.files[role] = {"key": str(secret), "server_key": server}
        if role == "client":
            made.owner = zmq.auth.load_certificate(folder / sub / public.name)[0].decode()
    return made


@pytest.fixture(autouse=True)
def fresh_gates() -> None:
    GATES.clear()
    TRIES.clear()


def opened(name: str) -> None:
    GATES.setdefault(name, asyncio.Event()).set()


async def serving(
    address: str, name: str, queues: tuple[str, ...], keys: ClientKeys | None = None
) -> AsyncIterator[Worker]:
    worker = Worker(
        address,
        name=name,
        concurrency=16,
        queues=queues,
        registry=TASKS,
        drain_timeout=1,
        keys=keys,
    )
    task = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        worker.stop()
        await asyncio.wait_for(task, 10)


def held(brain: Brain) -> tuple[int, int]:
    return brain.table.held.of("")


async def settled(brain: Brain) -> bool:
    """Nothing in flight, for anyone, and nothing waited for (and the table agrees: no
    live job)."""
    live = [j for j in brain.table.jobs.values() if j.status.value in LIVE_STATES]
    return not live and not brain.table.held.by_owner and not brain.scheduler.quotas.waits


LIVE_STATES = ("PENDING", "QUEUED", "RUNNING")


async def assert_settled(brain: Brain) -> None:
    try:
        await until(lambda: settled(brain), timeout=20)
    except TimeoutError:
        live = {j.id: j.status.value for j in brain.table.jobs.values()}
        raise AssertionError(
            f"held {brain.table.held.by_owner}, "
            f"waits {dict(brain.scheduler.quotas.waits)}, jobs {live}"
        ) from None


async def lose_a_worker(address: str, goodbye: bool = True, keys: ClientKeys | None = None) -> int:
    """A worker that takes one job from queue "lossy" and leaves holding it (saying goodbye:
    the attempt is lost at once, or else silently). Returns the job's id."""
    transport = connect(address, keys)
    transport.send(wire.encode(wire.WorkerHello(wire.PROTOCOL_VERSION, "lossy", 1, ["lossy"])))
    try:
        while True:
            for frame in await transport.recv_batch():
                message = wire.decode_reply(frame)
                if isinstance(message, wire.Assign):
                    [a] = message.assignments
                    if goodbye:
                        transport.send(wire.encode(wire.Goodbye(leases=[(a.job_id, a.token)])))
                    return a.job_id
    finally:
        await transport.close()


async def test_every_way_a_job_ends_gives_its_allowance_back(keys: Keys) -> None:
    store = MemoryStore()
    async with Brain(config(keys.folder), store) as brain, keys.client(brain.address) as client:
        gen = serving(brain.address, "w", ("default",), keys.worker())
        await anext(gen)
        other = keys.client(brain.address)
        await other.connect()
        admin = keys.client(brain.address, "admin")
        await admin.connect()
        try:
            # Succeeds; fails after its retries; times out.
            ok = await client.submit("add", [1, 2])
            failed = await client.submit("fails", max_retries=2)
            timed_out = await client.submit("sleeps", [30], timeout=0.1, max_retries=1)
            # Cancelled while PENDING on a parent, QUEUED (nobody serves "nobody"), RUNNING.
            gate = await client.submit("blocked", ["gate"])
            pending = await client.submit("add", [1, 1], depends_on=[gate])
            queued = await client.submit("add", [1, 1], queue="nobody")
            running = await client.submit("blocked", ["never"])
            await until_running(client, running)
            # Waited for twice by one client, and once by another, before they end.
            waits = [
                asyncio.create_task(client.wait([ok, failed, timed_out, pending, running])),
                asyncio.create_task(client.wait([pending, queued, running])),
                asyncio.create_task(other.wait([queued, running, gate])),
            ]
            cancelled = await client.cancel([pending, queued, running])
            assert cancelled == {pending: "CANCELLED", queued: "CANCELLED", running: "CANCELLED"}
            opened("gate")
            # UPSTREAM_FAILED through a DAG and through a workflow.
            bad = await client.submit("fails", max_retries=0)
            child = await client.submit("add", [1, 1], depends_on=[bad])
            grandchild = await client.submit("add", [1, 1], depends_on=[child])
            _, steps = await client.submit_workflow(
                {
                    "a": (job_spec("fails", max_retries=0), []),
                    "b": (job_spec("add", [1, 1]), ["a"]),
                    "c": (job_spec("add", [2, 2]), ["b"]),
                }
            )
            outcomes = await client.wait([grandchild, steps["c"]], timeout=20)
            assert {o.status for o in outcomes.values()} == {"UPSTREAM_FAILED"}
            # A dead letter re-queued, then succeeding.
            dead = await client.submit("flaky", ["dead", 1], max_retries=0)
            with pytest.raises(JobFailed):
                await client.result(dead, timeout=20)
            # A re-queued ancestor revives its UPSTREAM_FAILED descendants.
            root = await client.submit("flaky", ["root", 1], max_retries=0)
            kid = await client.submit("add", [5, 5], depends_on=[root])
            kid2 = await client.submit("add", [6, 6], depends_on=[kid])
            assert (await client.wait([kid2], timeout=20))[kid2].status == "UPSTREAM_FAILED"
            assert brain.table.held.of(keys.owner)[0] > 0
            assert (await admin.requeue([dead, root])).job_ids == [dead, root]
            assert await client.result(dead, timeout=20) == "dead"
            assert await client.result(kid2, timeout=20) == 12
            # A worker lost while running one: retried, then run by another worker.
            lossy = asyncio.create_task(lose_a_worker(brain.address, keys=keys.worker()))
            lost = await client.submit("add", [7, 7], queue="lossy", max_retries=1)
            assert await lossy == lost
            lossy_gen = serving(brain.address, "w2", ("lossy",), keys.worker())
            await anext(lossy_gen)
            assert await client.result(lost, timeout=20) == 14
            view = await client.job(lost)
            assert view is not None
            assert view.attempts == 2, "the lost attempt counted"
            await lossy_gen.aclose()
            # The same idempotency key again (live, then ended), with and without a wait.
            keyed = await client.submit("blocked", ["keyed"], idempotency_key="k")
            assert await client.submit("blocked", ["keyed"], idempotency_key="k") == keyed
            again = asyncio.create_task(
                client.submit_and_wait([job_spec("blocked", ["keyed"], idempotency_key="k")])
            )
            await until(lambda: _waited(brain, keyed))
            opened("keyed")
            [outcome] = await again
            assert outcome.job_id == keyed
            both = await client.submit_and_wait(
                [job_spec("blocked", ["keyed"], idempotency_key="k"), job_spec("add", [1, 1])]
            )
            assert both[0].job_id == keyed
            # Submitted with their wait: one ends at once (its parent failed), one runs.
            many = await client.submit_and_wait(
                [job_spec("add", [1, 1], depends_on=[bad]), job_spec("add", [2, 2])]
            )
            assert [o.status for o in many] == ["UPSTREAM_FAILED", "SUCCEEDED"]
            assert await client.run("add", [3, 4]) == 7
            # A Wait naming finished jobs only, and finished and live ones together.
            await client.wait([ok, failed, bad], timeout=20)
            late = await client.submit("blocked", ["late"])
            mixed = asyncio.create_task(client.wait([ok, late, bad]))
            await until(lambda: _waited(brain, late))
            opened("late")
            await mixed
            for task in waits:
                await asyncio.wait_for(task, 20)
            await assert_settled(brain)
        finally:
            await other.close()
            await admin.close()
            await gen.aclose()


async def _waited(brain: Brain, job_id: int) -> bool:
    return job_id in brain.scheduler.waiters


async def test_a_restart_counts_the_live_jobs_it_loads_and_gives_them_back() -> None:
    """Live at the restart: QUEUED, PENDING on a parent, PENDING in a retry's backoff,
    RUNNING on a worker that claims it back, RUNNING on one that never comes back."""
    store = MemoryStore()
    cfg = msgspec.structs.replace(config(), lease=1.0, lease_grace=0.0, heartbeat_interval=0.2)
    async with Brain(cfg, store) as brain, AsyncClient(brain.address) as client:
        keeper = Worker(brain.address, name="keeper", queues=("kept",), registry=TASKS)
        keeping = asyncio.create_task(keeper.run())
        queued = await client.submit("add", [1, 1], queue="later")
        waiting = await client.submit("add", [2, 2], queue="later", depends_on=[queued])
        kept = await client.submit("blocked", ["kept"], queue="kept")
        await until_running(client, kept)
        orphan = asyncio.create_task(lose_a_worker(brain.address, goodbye=False))
        orphaned = await client.submit("add", [3, 3], queue="lossy")
        assert await orphan == orphaned
        gen = serving(brain.address, "w", ("retry",))
        await anext(gen)
        retried = await client.submit(
            "flaky", ["retry", 1], queue="retry", max_retries=1, backoff=(0.5, 1.0, 0.5)
        )
        await until(lambda: _attempted(client, retried))
        await gen.aclose()
        before = held(brain)
        assert before[0] == 5
    async with Brain(cfg, store) as brain, AsyncClient(brain.address) as client:
        assert held(brain) == before, "the jobs it loads count as they did"
        gen = serving(brain.address, "w", ("later", "lossy", "retry"))
        await anext(gen)
        try:
            await until_running(client, kept)  # claimed back by its worker
            opened("kept")
            jobs = [queued, waiting, kept, orphaned, retried]
            outcomes = await client.wait(jobs, timeout=20)
            assert {o.status for o in outcomes.values()} == {"SUCCEEDED"}
            await assert_settled(brain)
        finally:
            keeper.stop()
            await asyncio.wait_for(keeping, 10)
            await gen.aclose()


async def _attempted(client: AsyncClient, job_id: int) -> bool:
    view = await client.job(job_id)
    return view is not None and view.attempts == 1 and view.status in ("PENDING", "QUEUED")
