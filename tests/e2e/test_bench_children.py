"""A bench run leaves no process behind: killed itself (a test's timeout, a second Ctrl-C),
its scheduler and workers die with it (``bench.children``); stopped, it also reaps a
process that was started but never made the scheduler or a worker (a restart whose wait
for the port failed, under load)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from bench.harness import ROOT, Cluster, free_address
from tests.helpers.procs import children_of


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_a_killed_bench_takes_its_scheduler_and_workers_with_it() -> None:
    bench = subprocess.Popen(
        [sys.executable, "-m", "bench", "--jobs", "5000000", "--workers", "2", "--json"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        until(lambda: len(children_of(bench.pid)) >= 3, 60, "scheduler and 2 workers started")
        started = children_of(bench.pid)
        bench.send_signal(signal.SIGKILL)
        bench.wait()
        until(lambda: not any(alive(pid) for pid in started), 20, f"{started} outlived the bench")
    finally:
        if bench.poll() is None:
            bench.kill()
            bench.wait()


def test_stopping_a_cluster_reaps_a_process_it_never_made_its_scheduler(tmp_path: Path) -> None:
    cluster = Cluster(directory=tmp_path)
    stray = cluster._spawn(
        "stray", "scheduler", "--bind", free_address(), "--db", str(tmp_path / "stray.db")
    )
    assert cluster.scheduler is None
    assert not cluster.workers
    cluster.stop()
    assert stray.poll() is not None, "stopped with the rest"
