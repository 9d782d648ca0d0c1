"""The inspection and submission commands as a user meets them, on real processes: `watch`
of a job that ended or never existed, one-line usage errors (exit 2), Ctrl-C during
`submit --wait`, output into a pipe that closes early (`| head`), labels that need
escaping in Mermaid and DOT, tables that keep every cell when piped, `--require-worker`,
and the live `status` view saying the scheduler is unreachable, then recovering."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from actors.cli.views import workflow_dot, workflow_mermaid
from actors.client import Client, job_spec
from actors.errors import RequestRefused
from tests.e2e.test_cli import corral
from tests.e2e.test_client_sdk import FakeScheduler
from tests.helpers.cluster import Cluster
from tests.helpers.procs import ROOT, free_address
from transport import protocol as wire


def cli(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "actors.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )


@pytest.fixture
def address(cluster: Cluster) -> str:
    """The address of the cluster, started: a scheduler, no worker."""
    cluster.start()
    return cluster.address


# ------------------------------------------------------------------- watch


@pytest.mark.slow
def test_watch_of_an_ended_job_prints_its_state_and_of_an_unknown_job_says_so(
    cluster: Cluster, address: str
) -> None:
    cluster.worker("w", 2)
    ok = corral("submit", "record", "[1]", "--wait", "--connect", address)
    bad = corral(
        "submit", "fail_until", "[9]", "--max-retries", "0", "--wait", "--connect", address
    )
    ok_id, bad_id = ok.stdout.split()[0], bad.stdout.split()[0]

    watched = corral("watch", ok_id, "--connect", address)
    assert watched.returncode == 0, watched.stderr
    assert re.fullmatch(rf"\S+ job +job {ok_id} SUCCEEDED\n", watched.stdout)
    failed = corral("watch", bad_id, "--json", "--connect", address)
    assert failed.returncode == 1
    assert json.loads(failed.stdout)[4] == "FAILED"
    missing = corral("watch", "999", "--connect", address)
    assert missing.returncode == 1
    assert missing.stdout == ""
    assert missing.stderr == "corral: error: no job 999\n"


@pytest.mark.slow
def test_watch_of_a_running_job_follows_it_and_exits_with_its_outcome(
    cluster: Cluster, address: str
) -> None:
    [job_id] = corral("submit", "record", '{"seconds": 0.5}', "--connect", address).stdout.split()
    watching = cli("watch", job_id, "--connect", address)
    cluster.worker("w", 1)
    out, err = watching.communicate(timeout=60)
    assert watching.returncode == 0, err
    assert out.splitlines()[-1].endswith(f"job {job_id} SUCCEEDED")


# ------------------------------------------------------------------- submit


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["submit"], "corral: error: name a TASK to run, or pass --file FILE"),
        (["submit", "t", "{oops"], "corral: error: ARGS_JSON is not valid JSON"),
        (["submit", "t", "--max-retries", "-1"], "--max-retries: must be 0 or more, got -1"),
        (["submit", "t", "--priority", "2000000"], "--priority: must be 1000000 or less"),
        (["submit", "t", "--queue", "a b"], "--queue: must be letters, digits and _ . : -"),
        (["submit", "t", "--timeout", "0"], "--timeout: must be more than 0, got 0"),
        (["submit", "t", "--backoff", "1", "0", "9"], "--backoff: FACTOR must be 1 or more"),
        (["submit", "t", "--idempotency-key", ""], "--idempotency-key: must not be empty"),
        (["submit", "t", "--backoff", "5", "2", "1"], "--backoff: CAP (1) must be at least BASE"),
        (["submit", "t", "--delay", "367d"], "--delay: must be 31622400 or less, got 31708800"),
        (
            ["submit", "t", "--at", "2100-01-02T00:00:00Z"],
            "--at: must be 2100-01-01T00:00:00Z or earlier, got 2100-01-02T00:00:00Z",
        ),
    ],
)
def test_a_wrong_submission_is_a_usage_error_in_one_line(args: list[str], line: str) -> None:
    done = corral(*args, "--connect", free_address())
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1, done.stderr
    assert line in done.stderr
    assert "Expected" not in done.stderr
    assert "$[" not in done.stderr


def test_a_wrong_line_in_a_file_names_the_line_and_the_field(tmp_path: Path) -> None:
    path = tmp_path / "jobs.jsonl"
    path.write_text('{"task": "t"}\n{"task": "t", "max_retries": -1}\n')
    done = corral("submit", "--file", str(path), "--connect", free_address())
    assert done.returncode == 2
    assert done.stderr == f"corral: error: {path}:2: max_retries: must be 0 or more, got -1\n"


@pytest.mark.slow
async def test_ctrl_c_during_submit_wait_prints_the_submitted_id(
    cluster: Cluster, address: str
) -> None:
    waiting = cli("submit", "record", "[1]", "--wait", "--connect", address)  # no worker
    async with cluster.client() as client:
        while (await client.status()).jobs["QUEUED"] < 1:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)  # let it get from submitting to waiting (either is fine)
    waiting.send_signal(signal.SIGINT)
    out, err = waiting.communicate(timeout=30)
    assert waiting.returncode == 130, err
    assert out.split() == ["1"]
    assert "Traceback" not in err
    assert "interrupted" in err


# --------------------------------------------------------------- require_worker


def refuse_without_worker(message: wire.ToScheduler) -> list[wire.Message]:
    if isinstance(message, wire.Submit):
        if message.require_worker:
            text = f"no connected worker has task {message.jobs[0].task!r}"
            return [wire.ErrorReply("no_worker", text, message.request_id)]
        return [wire.Submitted(message.request_id, [1], [False])]
    return []


def test_require_worker_reaches_the_scheduler_and_its_refusal_is_one_line() -> None:
    address = free_address()
    with FakeScheduler(address, refuse_without_worker) as fake:
        with Client(address, connect_timeout=5) as client:
            assert client.submit("t") == 1
            with pytest.raises(RequestRefused) as refused:
                client.submit("t", require_worker=True)
            assert refused.value.code == "no_worker"
            with pytest.raises(RequestRefused):
                client.run("t", require_worker=True, timeout=5)
        done = corral("submit", "t", "--require-worker", "--connect", address)
        assert done.returncode == 1
        assert done.stderr == "corral: error: no_worker: no connected worker has task 't'\n"
        submits = [m for m in fake.received if isinstance(m, wire.Submit)]
        assert [m.require_worker for m in submits] == [False, True, True, True]


@pytest.mark.slow
def test_require_worker_against_a_real_scheduler(cluster: Cluster, address: str) -> None:
    done = corral("submit", "record", "[1]", "--require-worker", "--connect", address)
    assert done.returncode == 1
    assert "no_worker" in done.stderr
    cluster.worker("w", 1)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # until the worker's hello is in
        done = corral("submit", "record", "[1]", "--require-worker", "--connect", address)
        if done.returncode == 0:
            break
    assert done.returncode == 0, done.stderr


@pytest.mark.slow
def test_jobs_filters_by_task_key_and_creation_time_and_pages_by_id(
    cluster: Cluster, address: str
) -> None:
    with Client(address) as client:
        ids = client.submit_many(
            [job_spec("record", [i], idempotency_key=f"k{i}") for i in range(3)]
            + [job_spec("add", [1, 2]), job_spec("add", [3, 4])]
        )

    def listed(*args: str) -> list[int]:
        done = corral("jobs", "--json", *args, "--connect", address)
        assert done.returncode == 0, done.stderr
        return [job["job_id"] for job in json.loads(done.stdout)]

    assert listed("--task", "add") == ids[:2:-1]
    assert listed("--idempotency-key", "k1") == [ids[1]]
    assert listed("--since", "1h") == ids[::-1]
    assert listed("--since", "2000-01-01T00:00:00Z", "--until", "2001-01-01T00:00:00Z") == []
    assert listed("--limit", "2") == ids[:2:-1]
    assert listed("--limit", "2", "--before", str(ids[3])) == [ids[2], ids[1]]
    for args, line in (
        (("--since", "yesterday"), "--since: a time (2026-12-01T09:00:00Z) or how long ago"),
        (("--until", "3000-01-01"), "--until: a time between 1970 and 2100"),
        (("--before", "0"), "--before: must be at least 1"),
    ):
        done = corral("jobs", *args, "--connect", address)
        assert (done.returncode, done.stderr.count("\n")) == (2, 1), done.stderr
        assert line in done.stderr, done.stderr


# ------------------------------------------------------------------- output


def test_labels_are_escaped_for_mermaid_and_dot() -> None:
    names = ['load "raw"', "a\\b", "x<y>#1", "ok"]
    steps = [wire.StepView(n, i + 1, "QUEUED", [], "t", 0, 0) for i, n in enumerate(names)]
    view = wire.WorkflowView(1, "w", 0.0, steps)
    mermaid = workflow_mermaid(view)
    labels = re.findall(r'\["(.*?)"\]', mermaid)
    assert len(labels) == 4
    assert not any('"' in label for label in labels)
    assert "load #quot;raw#quot;" in labels[0]
    assert "#lt;" in labels[2]
    dot = workflow_dot(view)
    quoted = r'"(?:[^"\\]|\\.)*"'  # DOT's double-quoted string
    for line in dot.splitlines()[2:6]:
        assert re.fullmatch(rf"    s\d+ \[label={quoted}, color=\w+\];", line), line
    assert 'load \\"raw\\"' in dot
    assert "a\\\\b" in dot


@pytest.mark.slow
def test_output_into_a_closed_pipe_ends_quietly_and_tables_keep_every_cell(
    address: str,
) -> None:
    # Outputs of a few hundred lines (a 300-step chain); their size does not decide the
    # outcome, since stdout is closed before the command writes anything.
    steps = {
        f'step {i} "q"': (job_spec("record", [i]), [f'step {i - 1} "q"'] if i else [])
        for i in range(300)
    }
    long_task = "task_" + "x" * 150
    with Client(address, connect_timeout=10) as client:
        workflow_id, _ = client.submit_workflow(steps)
    commands = [
        ["dag", str(workflow_id), "--format", "mermaid"],
        ["dag", str(workflow_id)],
        ["jobs", "--limit", "301"],
        ["job", "1"],
        ["status", "--once"],
        ["submit", "record", "[1]"],
    ]
    for args in commands:
        with cli(*args, "--connect", address) as proc:
            assert proc.stdout is not None
            assert proc.stderr is not None
            # Closed before the command writes (like `| head -4` once head has its lines,
            # but independent of how much a pipe buffers on this machine).
            proc.stdout.close()
            err = proc.stderr.read()
            code = proc.wait(timeout=30)
        assert err == "", f"{args}: no BrokenPipeError traceback, nothing at all"
        assert code == 141, f"{args}: what a shell reports for a command a closed pipe stopped"
    with Client(address, connect_timeout=10) as client:
        client.submit(long_task)
    listed = corral("jobs", "--limit", "1", "--connect", address)
    assert long_task in listed.stdout, "the cell is whole, not cut at 80 columns"


# ------------------------------------------------------------------- status


def read_for(fd: int, output: bytearray, until: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if until(bytes(output)):  # type: ignore[operator]
            return True
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                output += os.read(fd, 65536)
            except OSError:
                return bool(until(bytes(output)))  # type: ignore[operator]
    return bool(until(bytes(output)))  # type: ignore[operator]


@pytest.mark.slow
def test_the_live_status_says_the_scheduler_is_unreachable_and_recovers(
    cluster: Cluster, address: str
) -> None:
    pid, fd = pty.fork()
    if pid == 0:  # the child: corral status, live, in a terminal
        os.environ.update({"COLUMNS": "160", "LINES": "50", "TERM": "xterm"})
        os.chdir(ROOT)
        argv = [sys.executable, "-m", "actors.cli", "status", "--interval", "0.5"]
        os.execv(sys.executable, [*argv, "--connect", address])
    output = bytearray()
    try:
        assert read_for(fd, output, lambda o: b"jobs by state" in o, 30), output.decode()
        cluster.stop_scheduler()
        killed_at = time.monotonic()
        seen = len(output)
        assert read_for(fd, output, lambda o: b"unreachable" in o[seen:], 15), output.decode()
        assert time.monotonic() - killed_at < 10, "said within a few seconds"
        cluster.start_scheduler()

        def recovered(o: bytes) -> bool:
            last = o.rfind(b"unreachable")
            return last > 0 and b"strategy" in o[last:]

        assert read_for(fd, output, recovered, 30), output.decode()
    finally:
        os.kill(pid, signal.SIGINT)
        _, status = os.waitpid(pid, 0)
    assert "Traceback" not in output.decode(errors="replace")
    assert os.WIFEXITED(status)
    assert os.WEXITSTATUS(status) == 0
