"""Real scheduler and worker processes for tests, always cleaned up."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

# FAST_TIMINGS: second-scale lease timings, so fault tests finish fast
from bench.harness import FAST_TIMINGS, free_address, wait_for_port

ROOT = Path(__file__).resolve().parents[2]
__all__ = ["FAST_TIMINGS", "ROOT", "Procs", "free_address", "wait_for_port"]


def children_of(pid: int) -> list[int]:
    """Live (not zombie) processes whose parent is ``pid``, from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(entry.name))
    return found


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

    def spawn(self, label: str, *args: str, wrap: Sequence[str] = ()) -> subprocess.Popen[bytes]:
        """``corral ARGS`` as a process, run through the command ``wrap`` when given (e.g.
        ``ip netns exec NAME``, which execs it: the process is corral's, signals and all)."""
        with open(self.logs / f"{label}-{len(self.procs)}.log", "wb") as log:
            proc = subprocess.Popen(
                [*wrap, sys.executable, "-m", "actors.cli", *args],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
            )
        self.procs.append(proc)
        return proc

    def scheduler(self, address: str, db: Path | str, *extra: str) -> subprocess.Popen[bytes]:
        """A scheduler on ``db`` (an SQLite file, or a postgresql:// DSN), once it listens."""
        proc = self.spawn(
            "scheduler", "scheduler", "--bind", address, "--db", str(db), *FAST_TIMINGS, *extra
        )
        wait_for_port(address, proc)
        return proc

    def cleanup(self) -> None:
        """SIGKILL every process still running (a SIGSTOPped one too), then reap them all,
        each one even when another cannot be reaped."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
        stuck = []
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                stuck.append(proc.pid)
        assert not stuck, f"processes {stuck} outlived SIGKILL by 10 s"

    def log_text(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
            for p in sorted(self.logs.iterdir())
        )


def corral(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the `corral` command to its end (at most a minute); its output as text."""
    return subprocess.run(
        [sys.executable, "-m", "actors.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=env,
        check=False,
    )


def give_up(reason: str) -> NoReturn:
    """Fail the test in CI, skip it elsewhere, saying why: a part it needs (root, ip(8),
    mount(8)) is missing. CI (CORRAL_TEST_EVERYTHING=1, set by .ci/run) runs as root and
    must run every test; only a developer's machine without root may skip them."""
    import pytest

    if os.environ.get("CORRAL_TEST_EVERYTHING"):
        pytest.fail(reason)
    pytest.skip(reason)
