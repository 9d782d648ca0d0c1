"""A corral cluster for one end-to-end test: a scheduler process on a free address with its
own SQLite file, worker processes the test names, clients of that scheduler, and restarts
of the scheduler on the same file. The processes are started and reaped by ``Procs``: the
``procs`` fixture SIGKILLs whatever still runs after the test, passed or failed.

``use_keys()`` makes it a CURVE cluster: the scheduler gets a key folder, each worker a
key of its own in the ``workers/`` role (made when it starts), and the test's clients
an ``admins/`` key."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path

from actors.client import AsyncClient
from actors.keys import keygen
from tests.helpers.procs import Procs, free_address

# The task module workers run unless a test says otherwise: its tasks write the ledger.
LEDGER_TASKS = "tests.helpers.ledger_tasks"
# Async tasks only: jobs run on the worker's loop, for tests where many jobs must be quick.
ASYNC_TASKS = "tests.helpers.async_tasks"

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
        self.keys: Path | None = None  # the scheduler's key folder (use_keys)
        self.secrets = procs.tmp / "secrets"  # every other process's secret key

    def use_keys(self) -> None:
        """CURVE from now on (call before ``start``)."""
        self.keys = self.procs.tmp / "keys"
        keygen("scheduler", self.keys)
        self.key("admin", "admins")

    def key(self, name: str, role: str) -> list[str]:
        """A new key pair ``name``, its public key accepted in ``role`` (workers, clients,
        admins); the flags a process uses it with."""
        assert self.keys is not None, "use_keys() first"
        public, _ = keygen(name, self.secrets)
        (self.keys / role).mkdir(exist_ok=True)
        public.rename(self.keys / role / public.name)
        return self.key_flags(name)

    def key_flags(self, name: str) -> list[str]:
        if self.keys is None:
            return []
        secret = self.secrets / f"{name}.key_secret"
        return ["--key", str(secret), "--server-key", str(self.keys / "scheduler.key")]

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
        keys = ("--keys", str(self.keys)) if self.keys else ()
        self._scheduler = self.procs.scheduler(self.address, self.db, *keys, *self.scheduler_args)
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
        through ``wrap`` if given (``Procs.spawn``: e.g. in a network namespace). With
        keys, it gets a worker key of its own (the same one again under the same name)."""
        keys: list[str] = []
        if self.keys is not None:
            made = (self.secrets / f"{name}.key_secret").exists()
            keys = self.key_flags(name) if made else self.key(name, "workers")
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
            *keys,
            *extra,
            wrap=wrap,
        )
        self.workers[name] = proc
        return proc

    def client(self, **timeouts: float) -> AsyncClient:
        """A client of this scheduler (use it in ``async with``); a 10 s connect timeout
        unless given, since a scheduler process may start slowly on a busy machine. With
        keys, it uses the admin key."""
        keys: dict[str, Path] = {}
        if self.keys is not None:
            keys = {
                "key": self.secrets / "admin.key_secret",
                "server_key": self.keys / "scheduler.key",
            }
        return AsyncClient(self.address, **{"connect_timeout": 10.0, **timeouts}, **keys)

    def logs(self, label: str) -> list[Path]:
        """The log files of the processes started as ``label`` ("scheduler", a worker's
        name), in the order they were started."""
        mine = [p for p in self.procs.logs.iterdir() if p.stem.rsplit("-", 1)[0] == label]
        return sorted(mine, key=lambda p: int(p.stem.rsplit("-", 1)[1]))

    def log(self, label: str) -> str:
        """Everything the processes started as ``label`` wrote, in the order started."""
        return "".join(p.read_text(errors="replace") for p in self.logs(label))
