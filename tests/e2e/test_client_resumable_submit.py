"""`corral submit --file` survives a scheduler killed mid-submission: ids are printed as
each chunk commits, every line carries an idempotency key derived from the file's content
and its line number, so running the same command again submits only what is missing and
prints every id, and no line ever becomes two jobs. Real scheduler processes, SIGKILL."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from actors.client import AsyncClient
from tests.e2e.test_cli import corral
from tests.helpers.cluster import Cluster
from tests.helpers.procs import ROOT

pytestmark = pytest.mark.slow

LINES = 50_000  # 50 chunks: a kill after the first lands well before the last


def jobs_file(tmp_path: Path) -> Path:
    path = tmp_path / "jobs.jsonl"
    with open(path, "w") as f:
        for i in range(LINES):
            f.write(json.dumps({"task": "record", "args": [i]}) + "\n")
    return path


def submit_until_some_ids(path: Path, address: str) -> tuple[subprocess.Popen[str], list[str]]:
    """Start `corral submit --file` and return once it has printed its first ids."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "actors.cli", "submit", "--file", str(path), "--connect", address],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    printed = [proc.stdout.readline().strip() for _ in range(1_000)]
    assert all(printed), "ids come out as the first chunk commits"
    return proc, printed


async def total_jobs(address: str) -> int:
    async with AsyncClient(address, connect_timeout=10) as client:
        return sum((await client.status()).jobs.values())


async def test_a_rerun_after_a_kill_prints_every_id_and_creates_no_duplicate(
    cluster: Cluster, tmp_path: Path
) -> None:
    address = cluster.address
    path = jobs_file(tmp_path)
    cluster.start()
    first, printed = submit_until_some_ids(path, address)
    cluster.stop_scheduler()
    out, err = first.communicate(timeout=60)  # it notices the silence, does not hang
    printed += out.split()
    assert first.returncode == 1, err
    assert 0 < len(printed) < LINES, "killed mid-submission"
    assert err.count("\n") <= 3
    assert "Traceback" not in err
    assert "timed out" in err
    assert "run the same command again" in err
    assert "no scheduler answered" not in err

    cluster.start_scheduler()
    again = corral("submit", "--file", str(path), "--connect", address)
    assert again.returncode == 0, again.stderr
    ids = again.stdout.split()
    assert len(ids) == LINES, "every line once, in file order"
    assert len(set(ids)) == LINES
    assert ids[: len(printed)] == printed, "the lines committed before keep their jobs"
    assert await total_jobs(address) == LINES


async def test_a_scheduler_restarted_during_the_submission_lets_it_finish_on_its_own(
    cluster: Cluster, tmp_path: Path
) -> None:
    address = cluster.address
    path = jobs_file(tmp_path)
    cluster.start()
    first, printed = submit_until_some_ids(path, address)
    cluster.restart_scheduler()
    out, err = first.communicate(timeout=60)
    assert first.returncode == 0, err
    ids = printed + out.split()
    assert len(ids) == LINES
    assert len(set(ids)) == LINES
    assert await total_jobs(address) == LINES
    rerun = corral("submit", "--file", str(path), "--connect", address)
    assert rerun.stdout.split() == ids
    assert await total_jobs(address) == LINES


def test_an_edited_file_is_new_work_and_a_line_keeps_its_own_key(
    cluster: Cluster, tmp_path: Path
) -> None:
    cluster.start()
    address = cluster.address
    path = tmp_path / "few.jsonl"
    lines = [{"task": "record", "args": [1]}, {"task": "record", "idempotency_key": "mine"}]
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    once = corral("submit", "--file", str(path), "--connect", address).stdout.split()
    twice = corral("submit", "--file", str(path), "--connect", address).stdout.split()
    assert once == twice == ["1", "2"]
    path.write_text(path.read_text() + json.dumps({"task": "record", "args": [3]}) + "\n")
    edited = corral("submit", "--file", str(path), "--connect", address).stdout.split()
    assert edited == ["3", "2", "4"], "new keys for an edited file; 'mine' is still job 2"
