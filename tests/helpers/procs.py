"""Real scheduler and worker processes for tests, always cleaned up."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from bench.harness import FAST_TIMINGS  # second-scale lease timings: fault tests finish fast

ROOT = Path(__file__).resolve().parents[2]
__all__ = ["FAST_TIMINGS", "ROOT", "Procs", "free_address", "wait_for_port"]


def free_address() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


class Procs:
    """Starts corral processes; ``cleanup()`` kills whatever is still running."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.ledger = tmp / "ledger"
        self.ledger.mkdir(exist_ok=True)
        self.logs = tmp / "logs"
        self.logs.mkdir(exist_ok=True)
        self.procs: list[subprocess.Popen[bytes]] = []
        self.env = {
            **os.environ,
            "CORRAL_LEDGER_DIR": str(self.ledger),
            "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        }

    def spawn(self, label: str, *args: str) -> subprocess.Popen[bytes]:
        with open(self.logs / f"{label}-{len(self.procs)}.log", "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "actors.cli", *args],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
            )
        self.procs.append(proc)
        return proc

    def scheduler(self, address: str, db: Path, *extra: str) -> subprocess.Popen[bytes]:
        proc = self.spawn(
            "scheduler", "scheduler", "--bind", address, "--db", str(db), *FAST_TIMINGS, *extra
        )
        wait_for_port(address, proc)
        return proc

    def worker(
        self, address: str, name: str, concurrency: int = 4, *extra: str
    ) -> subprocess.Popen[bytes]:
        return self.spawn(
            name,
            "worker",
            "tests.helpers.ledger_tasks",
            "--connect",
            address,
            "--concurrency",
            str(concurrency),
            "--name",
            name,
            *extra,
        )

    def cleanup(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
        for proc in self.procs:
            proc.wait(timeout=10)

    def log_text(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
            for p in sorted(self.logs.iterdir())
        )


def wait_for_port(address: str, proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    host, port = address.removeprefix("tcp://").rsplit(":", 1)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"scheduler exited with {proc.returncode} before listening")
        with socket.socket() as s:
            if s.connect_ex((host, int(port))) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"scheduler did not listen on {address} within {timeout}s")
