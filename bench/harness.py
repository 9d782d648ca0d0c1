"""Start and stop a real scheduler and real workers for a bench run; count executions."""

from __future__ import annotations

import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from array import array
from collections import Counter
from pathlib import Path

from bench import children

ROOT = Path(__file__).resolve().parents[1]

# Second-scale lease timings, for runs that kill workers and want reclaims to happen
# within the run (the chaos mode, and the test suite). The defaults are for a LAN.
FAST_TIMINGS = (
    "--heartbeat-interval",
    "0.2",
    "--suspect-after",
    "0.6",
    "--lease",
    "1.0",
    "--lease-grace",
    "0.4",
    "--backoff-base",
    "0.05",
    "--backoff-cap",
    "1",
)


def _ephemeral_ports() -> tuple[int, int]:
    """The range the kernel takes ports from for bind(0) and outgoing connections."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, high = (int(part) for part in f.read().split())
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default
    return low, high


# Listeners of tests and benches take their ports from below the kernel's ephemeral range
# (Linux: 32768-60999), which bind(0) and outgoing connections never use: a port freed by a
# scheduler killed mid-test is not handed to another process's bind(0) before the test
# starts a scheduler on it again (a client still retrying would reach that other process:
# most likely what happened when a killed scheduler's client printed ids its own scheduler
# never gave, from a test's fake scheduler, which names no database). Each process walks the
# range from a random start, so concurrent test processes rarely meet either.
#
# The processes of one ``pytest -n N`` run (pytest-xdist names them gw0...gwN-1 in
# $PYTEST_XDIST_WORKER) never meet: each walks a slice of the range of its own, and what it
# starts (a bench, a scheduler) inherits the variable and its slice. Walking one range from
# random starts, two of six processes once came within a few ports of each other and took
# turns at the same ports for seconds: a port free while a test's scheduler was down or not
# yet listening went to another test, whose clients then reached the first test's scheduler
# (eight tests failed at once, on ports 12374-12378).
def _port_range(low: int, high: int) -> tuple[int, int]:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    count = os.environ.get("PYTEST_XDIST_WORKER_COUNT", "")
    if not (worker.startswith("gw") and worker[2:].isdigit() and count.isdigit()):
        return low, high
    index, processes = int(worker[2:]), int(count)
    size = (high - low) // max(processes, 1)
    if index >= processes or size < 1000:  # too narrow a slice: the whole range
        return low, high
    return low + index * size, low + (index + 1) * size


_PORTS = _port_range(10_000, min(32_000, _ephemeral_ports()[0]))
_next_port = 0


def free_address() -> str:
    """A tcp:// address on loopback whose port is free now (see ``_PORTS``)."""
    global _next_port
    low, high = _PORTS
    if high - low < 1000:  # a machine whose ephemeral range starts low: the kernel's pick
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return f"tcp://127.0.0.1:{s.getsockname()[1]}"
    if not _next_port:
        _next_port = low + int.from_bytes(os.urandom(4), "big") % (high - low)
    for _ in range(high - low):
        port, _next_port = _next_port, low + (_next_port + 1 - low) % (high - low)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))  # no SO_REUSEADDR: lingering connections count
            except OSError:
                continue
        return f"tcp://127.0.0.1:{port}"
    raise OSError(f"no free port on 127.0.0.1 between {low} and {high}")


def listening(address: str) -> bool:
    """Whether something accepts connections at a tcp:// or ipc:// address."""
    if address.startswith("ipc://"):
        return os.path.exists(address.removeprefix("ipc://"))
    host, port = address.removeprefix("tcp://").rsplit(":", 1)
    with socket.socket() as s:
        return s.connect_ex((host, int(port))) == 0


# How long a new process may take to listen before the wait gives up: a bound against a
# hang only (the wait ends when it listens, or at once when it exits). One listens in about
# a second; on a two-core machine at a load of 17 to 22, some took over 15 s, mostly their
# imports (3 to 6 s for one alone at 19).
LISTEN_BOUND_S = 60.0


def wait_for_port(
    address: str,
    proc: subprocess.Popen[bytes],
    timeout: float = LISTEN_BOUND_S,
    log: Path | None = None,
) -> None:
    """Wait until the process ``proc`` (a scheduler or resolver) listens at ``address``."""
    see = f"; see {log}" if log is not None else ""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening{see}")
        if listening(address):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listened on {address} within {timeout}s{see}")


def histogram_percentiles(text: str) -> dict[str, dict[str, float | None]]:
    """p50/p99 in ms (bucket upper bounds) of every histogram in a Prometheus text page;
    None (JSON null, not the invalid ``Infinity``) when it lies beyond the largest bucket."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, dict[str, float | None]] = {}
    for family in text_string_to_metric_families(text):
        buckets = [
            (float(s.labels["le"]), s.value) for s in family.samples if s.name.endswith("_bucket")
        ]
        if not buckets or not buckets[-1][1]:
            continue
        total = buckets[-1][1]
        bounds = {q: next(le for le, n in buckets if n >= q * total) for q in (0.5, 0.99)}
        out[family.name] = {
            f"p{int(q * 100)}": None if math.isinf(le) else le * 1000 for q, le in bounds.items()
        }
    return out


def process_cpu_seconds(pid: int) -> float:
    """CPU time (user + system, all threads) process ``pid`` has used, from /proc (nan once
    it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            # Fields after the parenthesised command name; utime and stime are 14 and 15.
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Cluster:
    def __init__(
        self,
        scheduler_args: tuple[str, ...] = (),
        directory: Path | None = None,
        db: str | None = None,
        curve: bool = False,
        prefetch: int = 0,
    ) -> None:
        """``db``: the scheduler's --db (a PostgreSQL DSN); default a new SQLite file.
        ``prefetch``: every worker's ``--prefetch``.
        ``curve``: every process with a CURVE key (the scheduler's folder, one worker key
        shared by the workers, an admin key for the bench's clients)."""
        self.dir = directory or Path(tempfile.mkdtemp(prefix="corral-bench-"))
        self.address = os.environ.get("CORRAL_BENCH_ADDRESS") or free_address()
        self.db = db or str(self.dir / "corral.db")
        self.env = {
            **os.environ,
            "CORRAL_BENCH_DIR": str(self.dir),
            "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        }
        self.scheduler_args = scheduler_args
        self.prefetch = prefetch
        self.scheduler: subprocess.Popen[bytes] | None = None
        self.workers: list[subprocess.Popen[bytes]] = []
        self.spawned: list[subprocess.Popen[bytes]] = []  # every process started, for stop()
        self.keys = self.dir / "keys" if curve else None
        if self.keys is not None:
            from actors.keys import keygen

            keygen("scheduler", self.keys)
            for name, role in (("bench-worker", "workers"), ("bench-client", "admins")):
                public, _ = keygen(name, self.dir / "secrets")
                (self.keys / role).mkdir()
                public.rename(self.keys / role / public.name)

    def key_flags(self, name: str) -> list[str]:
        """--key/--server-key for a process using key ``name`` ([] without CURVE)."""
        if self.keys is None:
            return []
        secret = self.dir / "secrets" / f"{name}.key_secret"
        return ["--key", str(secret), "--server-key", str(self.keys / "scheduler.key")]

    def client_options(self) -> dict[str, Path]:
        """AsyncClient's key= and server_key= for the bench's clients ({} without CURVE)."""
        if self.keys is None:
            return {}
        secret = self.dir / "secrets" / "bench-client.key_secret"
        return {"key": secret, "server_key": self.keys / "scheduler.key"}

    def _spawn(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        """``corral ARGS`` as a process that dies with this one (``bench.children``): call
        from the main thread."""
        with open(self.dir / f"{name}.log", "ab") as log:
            proc = subprocess.Popen(
                children.command(sys.executable, "-m", "actors.cli", *args),
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
            )
        self.spawned.append(proc)
        return proc

    def start_scheduler(self) -> None:
        """A scheduler process, once it listens."""
        wait_for_port(self.address, self.spawn_scheduler(), log=self.dir / "scheduler.log")

    def spawn_scheduler(self) -> subprocess.Popen[bytes]:
        """A scheduler process, not waited for (``wait_for_port``, in a thread from async
        code); from the main thread, as every process of the run."""
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.metrics_port = s.getsockname()[1]
        self.scheduler = self._spawn(
            "scheduler",
            "scheduler",
            "--bind",
            self.address,
            "--db",
            str(self.db),
            "--metrics-port",
            str(self.metrics_port),
            *(("--keys", str(self.keys)) if self.keys else ()),
            *self.scheduler_args,
        )
        return self.scheduler

    def start_workers(
        self,
        n: int,
        concurrency: int,
        module: str = "bench.tasks",
        pool: str = "thread",
        queues: str = "default",
    ) -> None:
        """Start ``n`` workers on ``queues``. Threads by default, as in every figure measured
        before the process pool became the workers' default (the bench's no-op tasks are
        async anyway)."""
        for _ in range(n):
            i = len(self.workers)
            args = ["worker", module, "--connect", self.address, "--concurrency", str(concurrency)]
            args += ["--pool", pool, "--queues", queues, *self.key_flags("bench-worker")]
            args += ["--prefetch", str(self.prefetch)] if self.prefetch else []
            self.workers.append(self._spawn(f"worker-{i}", *args, "--name", f"bench-{i}"))

    def scheduler_histograms(self) -> dict[str, dict[str, float | None]]:
        """p50/p99 (ms, bucket upper bounds) of the scheduler's own latency histograms;
        None (JSON null, not the invalid ``Infinity``) beyond the largest bucket."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return histogram_percentiles(response.read().decode())
        except OSError:
            return {}

    def rss_mb(self) -> float:
        """Resident memory of the scheduler process, from /proc."""
        assert self.scheduler is not None
        try:
            with open(f"/proc/{self.scheduler.pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) / 1024
        except OSError:
            pass
        return float("nan")

    def cpu_seconds(self) -> float:
        """CPU time (user + system, all threads) the scheduler process has used, from /proc."""
        assert self.scheduler is not None
        return process_cpu_seconds(self.scheduler.pid)

    def cpu_by_role(self) -> dict[str, float]:
        """CPU seconds used so far by the scheduler, the workers (together) and this process
        (the load generator), from /proc: subtract two readings for a span."""
        assert self.scheduler is not None
        workers = sum(process_cpu_seconds(p.pid) for p in self.workers)
        return {
            "scheduler": process_cpu_seconds(self.scheduler.pid),
            "workers": workers,
            "load_generator": process_cpu_seconds(os.getpid()),
        }

    def stop(self) -> None:
        self.stop_workers()
        if self.scheduler is not None and self.scheduler.poll() is None:
            self.scheduler.send_signal(signal.SIGTERM)
            try:
                self.scheduler.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.scheduler.kill()
                self.scheduler.wait()
        self.reap()

    def reap(self) -> None:
        """SIGKILL and reap every process of the run still running (one a failed start or
        a fault injector left untracked), after the orderly stop had its chance."""
        for proc in self.spawned:
            if proc.poll() is None:
                proc.kill()
        for proc in self.spawned:
            proc.wait()

    def executions(self) -> Counter[int]:
        """How often each job id ran, from the workers' own records."""
        runs: Counter[int] = Counter()
        for path in self.dir.glob("*.ids"):
            ids = array("q")
            ids.frombytes(path.read_bytes())
            runs.update(ids)
        return runs

    def start_times(self) -> dict[int, float]:
        """When each job id (last) started, by the worker's clock (this machine's)."""
        starts: dict[int, float] = {}
        for path in self.dir.glob("*.ids"):
            ids, times = array("q"), array("d")
            ids.frombytes(path.read_bytes())
            times.frombytes(path.with_suffix(".starts").read_bytes())
            starts.update(zip(ids, times, strict=True))
        return starts

    def stop_workers(self) -> None:
        for proc in self.workers:
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)  # a paused (chaos) worker cannot drain
                proc.send_signal(signal.SIGTERM)
        for proc in self.workers:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
