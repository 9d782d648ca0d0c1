"""A corral cluster for one end-to-end test: a scheduler process on a free address with its
own SQLite file, worker processes the test names, clients of that scheduler, and restarts
of the scheduler on the same file. The processes are started and reaped by ``Procs``: the
``procs`` fixture SIGKILLs whatever still runs after the test, passed or failed."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path

from actors.client import AsyncClient
from tests.helpers.procs import Procs, free_address

# The task module workers run unless a test says otherwise: its tasks write the ledger.
LEDGER_TASKS = "tests.helpers.ledger_tasks"

# Generous for a loaded two-core machine: a SIGKILLed process is reaped in milliseconds,
# a SIGTERMed scheduler first commits what it holds.
STOP_BOUND_S = 15.0


class Cluster:
    """One scheduler, restartable on the same database with the same flags, and the
    workers the test adds. Nothing runs until ``start``."""

    def __init__(self, procs: Procs) -> None:
        self.procs = procs
        self.address = free_address()
        self.db = procs.tmp / "corral.db"
        self.ledger = str(procs.ledger)  # where the test tasks write what they ran
        self.scheduler_args: tuple[str, ...] = ()
        self.workers: dict[str, subprocess.Popen[bytes]] = {}
        self._scheduler: subprocess.Popen[bytes] | None = None

    def start(self, *scheduler_args: str, workers: int = 0, slots: int = 4) -> None:
        """A scheduler with these flags (after the fast test timings, so they win), and
        ``workers`` workers named w0, w1... with ``slots`` slots each."""
        self.scheduler_args = scheduler_args
        self.start_scheduler()
        for i in range(workers):
            self.worker(f"w{i}", slots)

    @property
    def scheduler(self) -> subprocess.Popen[bytes]:
        """The current scheduler process."""
        assert self._scheduler is not None, "the cluster was not started"
        return self._scheduler

    def start_scheduler(self) -> subprocess.Popen[bytes]:
        """A new scheduler process on the address and database; returns once it listens."""
        self._scheduler = self.procs.scheduler(self.address, self.db, *self.scheduler_args)
        return self._scheduler

    def stop_scheduler(self, how: signal.Signals = signal.SIGKILL) -> None:
        """Signal the scheduler (SIGKILL: a crash; SIGTERM: a clean stop) and reap it."""
        self.scheduler.send_signal(how)
        self.scheduler.wait(timeout=STOP_BOUND_S)

    def restart_scheduler(self, how: signal.Signals = signal.SIGKILL) -> subprocess.Popen[bytes]:
        """Stop the scheduler as ``how`` says and start another on the same database."""
        self.stop_scheduler(how)
        return self.start_scheduler()

    def worker(
        self,
        name: str,
        slots: int = 4,
        *extra: str,
        tasks: str = LEDGER_TASKS,
        connect: str | None = None,
        wrap: Sequence[str] = (),
    ) -> subprocess.Popen[bytes]:
        """A worker process named ``name`` running the task module ``tasks`` (not waited
        for: a test that needs it connected waits for the scheduler to report it), given
        ``connect`` as its scheduler address(es), this cluster's by default, started
        through ``wrap`` if given (``Procs.spawn``: e.g. in a network namespace)."""
        proc = self.procs.spawn(
            name,
            "worker",
            tasks,
            "--connect",
            connect or self.address,
            "--concurrency",
            str(slots),
            "--name",
            name,
            *extra,
            wrap=wrap,
        )
        self.workers[name] = proc
        return proc

    def client(self, **timeouts: float) -> AsyncClient:
        """A client of this scheduler (use it in ``async with``); a 10 s connect timeout
        unless given, since a scheduler process may start slowly on a busy machine."""
        return AsyncClient(self.address, **{"connect_timeout": 10.0, **timeouts})

    def logs(self, label: str) -> list[Path]:
        """The log files of the processes started as ``label`` ("scheduler", a worker's
        name), in the order they were started."""
        mine = [p for p in self.procs.logs.iterdir() if p.stem.rsplit("-", 1)[0] == label]
        return sorted(mine, key=lambda p: int(p.stem.rsplit("-", 1)[1]))

    def log(self, label: str) -> str:
        """Everything the processes started as ``label`` wrote, in the order started."""
        return "".join(p.read_text(errors="replace") for p in self.logs(label))
