"""``corral demo``: a scheduler, several worker processes and a small workload, shown live.

The workload has priorities (VIP invoices first), a DAG (pick -> pack -> ship,
with a fan-in report), a flaky job that succeeds on its third attempt after
backoff, a job that always fails and ends in the dead-letter queue, and one
long invoice whose worker is killed with SIGKILL mid-job: its lease expires,
the job is reclaimed under a new fencing token, runs again elsewhere, and the
customer is billed exactly once.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any

from rich.console import Group
from rich.live import Live
from rich.text import Text

from actors import AsyncClient, job_spec
from actors.cli.console import make_console
from actors.cli.output import quiet_on_closed_stdout
from actors.cli.views import status_renderable
from actors.config import DEFAULT_ADDRESS

# Short timings so the whole story fits in about 15 seconds.
DEMO_TIMINGS = [
    "--heartbeat-interval",
    "0.3",
    "--suspect-after",
    "0.9",
    "--lease",
    "1.5",
    "--lease-grace",
    "0.5",
    "--backoff-base",
    "0.4",
]


def _free_address() -> str:
    """The embedded default address if it is free, else any free loopback port."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", 5555))
            return DEFAULT_ADDRESS
        except OSError:
            s.bind(("127.0.0.1", 0))
            return f"tcp://127.0.0.1:{s.getsockname()[1]}"


class Demo:
    def __init__(self, workers: int, keep: bool) -> None:
        self.n_workers = workers
        self.keep = keep
        self.dir = tempfile.mkdtemp(prefix="corral-demo-")
        self.db = os.path.join(self.dir, "corral.db")
        self.address = _free_address()
        self.env = {**os.environ, "CORRAL_DEMO_DIR": self.dir, "PYTHONUNBUFFERED": "1"}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.events: list[str] = []
        self.console = make_console()

    def log(self, line: str) -> None:
        self.events.append(f"[{time.strftime('%H:%M:%S')}] {line}")

    def _spawn(self, name: str, *args: str) -> None:
        cmd = [sys.executable, "-m", "actors.cli", *args]
        with open(os.path.join(self.dir, f"{name}.log"), "wb") as out:
            self.procs[name] = subprocess.Popen(
                cmd, env=self.env, stdout=out, stderr=subprocess.STDOUT
            )

    def start_worker(self, name: str) -> None:
        self._spawn(
            name,
            "worker",
            "actors.cli.demo_tasks",
            "--connect",
            self.address,
            "--concurrency",
            "2",
            "--name",
            name,
        )
        self.log(f"started {name} (pid {self.procs[name].pid}, 2 slots)")

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        if not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)

    def view(self, status: Any) -> Group:
        return Group(Text("\n".join(self.events[-14:])), "", status_renderable(status))

    async def run(self) -> int:
        self._spawn(
            "scheduler", "scheduler", "--bind", self.address, "--db", self.db, *DEMO_TIMINGS
        )
        self.log(f"scheduler on {self.address}, state in {self.db}")
        for i in range(1, self.n_workers + 1):
            self.start_worker(f"worker-{i}")
        async with (
            AsyncClient(self.address, connect_timeout=15) as client,
            AsyncClient(self.address, connect_timeout=15) as watcher,
        ):
            narrator = asyncio.ensure_future(self.narrate(watcher))
            with Live(
                self.view(await client.status()),
                console=self.console,
                refresh_per_second=8,
                transient=False,
            ) as live:
                ok = await self.workload(client, live)
            narrator.cancel()
        self.summary(ok)
        return 0 if ok else 1

    async def narrate(self, watcher: AsyncClient) -> None:
        """Log the moments worth seeing from the event stream: health changes, reclaims."""
        async for event in watcher.watch():
            if event.kind == "worker" and event.status in ("suspect", "dead", "left"):
                self.log(f"event: worker {event.worker} is {event.status}")
            elif event.kind == "job" and event.status == "PENDING" and event.token:
                why = event.message.strip().splitlines()[-1] if event.message else ""
                if "lost" in why:
                    self.log(
                        f"event: job {event.job_id} reclaimed (token {event.token} is "
                        "dead): its worker was lost"
                    )
                else:
                    self.log(
                        f"event: job {event.job_id} failed under token {event.token}, "
                        f"retrying after backoff: {why}"
                    )

    async def workload(self, client: AsyncClient, live: Live) -> bool:
        async def refresh() -> None:
            live.update(self.view(await client.status()))

        big = await client.submit(
            "billing.invoice",
            ["ACME Corp", 129_000.0, 2.5],
            idempotency_key="invoice-ACME-2026-11",
            priority=100,
        )
        self.log(f"job {big}: invoice ACME Corp 129,000 (long, priority 100)")
        customers = [
            ("Globex", 10),
            ("Initech", 0),
            ("Umbrella", 10),
            ("Hooli", 0),
            ("Stark", 10),
            ("Wayne", 0),
            ("Tyrell", 0),
            ("Cyberdyne", 10),
        ]
        invoices = await client.submit_many(
            [
                job_spec(
                    "billing.invoice",
                    [name, 100.0 * (i + 1)],
                    priority=prio,
                    idempotency_key=f"invoice-{name}-2026-11",
                )
                for i, (name, prio) in enumerate(customers)
            ]
        )
        self.log(f"jobs {invoices[0]}-{invoices[-1]}: 8 invoices, VIPs at priority 10 run first")
        pick = await client.submit("warehouse.step", ["pick", "order-42"])
        pack = await client.submit("warehouse.step", ["pack", "order-42"], depends_on=[pick])
        ship = await client.submit("warehouse.step", ["ship", "order-42"], depends_on=[pack])
        report = await client.submit(
            "warehouse.step", ["report", "order-42"], depends_on=[ship, invoices[0]]
        )
        self.log(f"DAG: pick {pick} -> pack {pack} -> ship {ship} -> report {report} (+ invoice)")
        flaky = await client.submit("demo.flaky", ["settle payments"], max_retries=3)
        broken = await client.submit("demo.broken", max_retries=1)
        self.log(f"job {flaky}: fails twice, then succeeds; job {broken}: always fails")

        victim = await self._kill_holder(client, big, refresh)
        self.start_worker(f"worker-{self.n_workers + 1}")
        all_ids = [big, *invoices, pick, pack, ship, report, flaky, broken]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            await refresh()
            status = await client.status()
            if sum(status.jobs.get(s, 0) for s in ("PENDING", "QUEUED", "RUNNING")) == 0:
                break
            await asyncio.sleep(0.2)
        outcomes = await client.wait(all_ids, timeout=30)
        await refresh()
        view = await client.job(big)
        if view is not None and victim:
            self.log(
                f"job {big} reclaimed from {victim}: finished on {view.worker} "
                f"with fencing token {view.token}"
            )
        flaky_view = await client.job(flaky)
        if flaky_view is not None:
            self.log(
                f"job {flaky} {flaky_view.status} after {flaky_view.attempts} attempts (backoff)"
            )
        self.log(f"job {broken} {outcomes[broken].status}: in the dead-letter queue")
        await refresh()
        expected = {j: "SUCCEEDED" for j in all_ids} | {broken: "FAILED"}
        return all(outcomes[j].status == want for j, want in expected.items())

    async def _kill_holder(self, client: AsyncClient, job_id: int, refresh: Any) -> str | None:
        """SIGKILL whichever worker holds ``job_id`` while it runs."""
        for _ in range(100):
            view = await client.job(job_id)
            if view is not None and view.status == "RUNNING" and view.worker in self.procs:
                await asyncio.sleep(0.6)  # let it get well into the job
                self.procs[view.worker].send_signal(signal.SIGKILL)
                self.log(f"SIGKILL {view.worker} while it runs job {job_id} (token {view.token})")
                await refresh()
                return view.worker
            await asyncio.sleep(0.05)
        self.log(f"job {job_id} never started; nothing killed")
        return None

    def summary(self, ok: bool) -> None:
        def lines(name: str) -> list[dict[str, Any]]:
            path = os.path.join(self.dir, name)
            if not os.path.exists(path):
                return []
            with open(path, encoding="utf-8") as f:
                return [json.loads(line) for line in f]

        billed = lines("billed.jsonl")
        executions = lines("executions.jsonl")
        keys = [b["key"] for b in billed]
        acme = [e for e in executions if e["job"] == 1]
        self.console.print()
        self.console.print(
            f"invoices executed {len(executions)} times in all; "
            f"ACME's {len(acme)} time(s) (tokens {[e['token'] for e in acme]})"
        )
        self.console.print(
            f"customers billed: {len(keys)} charges for {len(set(keys))} invoices "
            f"-> double billing: {'NONE' if len(keys) == len(set(keys)) else 'YES'}"
        )
        self.console.print(
            "[green]demo finished: every job ended as expected[/]"
            if ok
            else "[red]demo finished with unexpected outcomes[/]"
        )
        if self.keep:
            self.console.print(f"files kept in {self.dir}")


@quiet_on_closed_stdout
def run_demo(workers: int = 3, keep: bool = False) -> int:
    demo = Demo(workers, keep)
    try:
        return asyncio.run(demo.run())
    finally:
        demo.stop_all()
