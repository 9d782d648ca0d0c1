"""The `corral` command as users script it, against a real scheduler process."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.helpers.cluster import Cluster
from tests.helpers.procs import corral, free_address
from tests.helpers.waiting import until_workers

pytestmark = pytest.mark.slow


@pytest.fixture
def address(cluster: Cluster) -> str:
    """The address of the cluster, started: a scheduler and one worker, cli-worker."""
    cluster.start()
    cluster.worker("cli-worker", 2)
    return cluster.address


def test_submit_prints_the_id_and_wait_prints_the_result(address: str) -> None:
    done = corral("submit", "record", '["hello"]', "--connect", address)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "1"
    waited = corral(
        "submit", "record", '{"value": 7}', "--priority", "3", "--wait", "--connect", address
    )
    assert waited.returncode == 0, waited.stderr
    assert waited.stdout.split() == ["2", "SUCCEEDED", "7"]


def test_submit_file_submits_json_lines_in_bulk(address: str, tmp_path: Path) -> None:
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(
        "\n".join(json.dumps({"task": "record", "args": [i], "priority": i % 3}) for i in range(20))
        + "\n"
    )
    done = corral("submit", "--file", str(jobs), "--wait", "--connect", address)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 20
    assert all(line.split()[1] == "SUCCEEDED" for line in lines)


def test_depends_on_and_idempotency_key_flags(address: str) -> None:
    parent = corral("submit", "record", "[1]", "--connect", address).stdout.strip()
    child = corral(
        "submit",
        "record",
        "[2]",
        "--depends-on",
        parent,
        "--idempotency-key",
        "once",
        "--connect",
        address,
    ).stdout.strip()
    again = corral("submit", "record", "[3]", "--idempotency-key", "once", "--connect", address)
    assert again.stdout.strip() == child


def test_a_failed_job_exits_non_zero_with_its_error(address: str) -> None:
    done = corral(
        "submit", "fail_until", "[5]", "--max-retries", "0", "--wait", "--connect", address
    )
    assert done.returncode == 1
    assert "FAILED" in done.stdout
    assert "planned failure on attempt 1" in done.stderr


def test_status_json_has_counts_and_workers(address: str) -> None:
    assert corral("submit", "record", "[1]", "--wait", "--connect", address).returncode == 0
    done = corral("status", "--json", "--connect", address)
    assert done.returncode == 0, done.stderr
    status = json.loads(done.stdout)
    assert status["jobs"]["SUCCEEDED"] == 1
    assert set(status["jobs"]) >= {"PENDING", "QUEUED", "RUNNING", "SUCCEEDED", "FAILED"}
    [worker] = status["workers"]
    assert {"name", "state", "slots", "running"} <= set(worker)
    assert worker["name"] == "cli-worker"
    assert worker["slots"] == 2
    table = corral("status", "--connect", address)
    assert table.returncode == 0
    assert "cli-worker" in table.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["submit"], "name a TASK"),
        (["submit", "t", "{oops"], "ARGS_JSON is not valid JSON"),
        (["submit", "t", "42"], "must be a JSON array"),
        (["submit", "t", "--priority", "high"], "invalid int value"),
        (["submit", "t", "--file", "/no/such/file"], "give either TASK or --file"),
        (["submit", "--file", "/no/such/file"], "cannot read /no/such/file"),
        (["scheduler", "--strategy", "random"], "'random' is not allowed: one of fifo"),
        (["worker", "no_such_module_xyz"], "cannot import task module"),
        (["nonsense"], "invalid choice"),
        (["job", str(10**26)], "no id is that large"),
        (["cancel", str(10**20)], "no id is that large"),
        (["dlq", "requeue", str(10**23)], "no id is that large"),
        (["watch", str(10**23)], "no id is that large"),
        (["job", str(2**62 + 1)], "no id is that large"),
        (["worker", "tasks", "--concurrency", "100000000"], "must be at most 10000"),
        (["worker", "tasks", "--prefetch", "-1"], "must be from 0 to 9999, got -1"),
        (["worker", "tasks", "--prefetch", "two"], "must be a whole number, got 'two'"),
        (["worker", "tasks", "--concurrency", "9000", "--prefetch", "1001"], "plus --prefetch"),
        (["submit", "t", "--timeout", "nan"], "must be a finite number"),
        # A hello the scheduler would refuse for ever: said at once (exit 2), not retried.
        (["worker", "tasks", "--queues", "a b"], "--queues item 1 must be letters"),
        (["worker", "tasks", "--queues", ","], "--queues names no queue"),
        (["worker", "tasks", "--name", "n" * 129], "--name must be at most 128 characters"),
        (["scheduler", "--dag-resolver", "http://x"], "--dag-resolver / CORRAL_DAG_RESOLVER"),
        (["scheduler", "--bind", "http://x"], "--bind / CORRAL_BIND: 'http://x' is not allowed"),
        (["scheduler", "--db", " "], "--db / CORRAL_DB: ' ' is not allowed"),
        (["submit", "t", "[" * 3000 + "]" * 3000], "ARGS_JSON is not valid JSON: nested too"),
        (["submit", "--file", "/dev/zero"], "/dev/zero is larger than 256 MiB"),
        (["submit", "t", "--max-concurrent", "2"], "--max-concurrent needs a concurrency key"),
        (["jobs", "--limit", "99999999999"], "must be at most 100000"),
        (["dlq", "list", "--limit", "100001"], "must be at most 100000"),
    ],
)
def test_bad_arguments_give_one_line_errors_not_tracebacks(args: list[str], message: str) -> None:
    done = corral(*args)
    assert done.returncode != 0
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_an_unreachable_scheduler_is_one_line_error() -> None:
    done = corral("status", "--connect", free_address())
    assert done.returncode == 1
    assert "no scheduler answered" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_a_second_scheduler_on_the_same_database_is_refused(address: str, cluster: Cluster) -> None:
    done = corral("scheduler", "--bind", free_address(), "--db", str(cluster.db))
    assert done.returncode == 1
    assert "in use by another corral scheduler" in done.stderr


def test_every_command_has_help() -> None:
    for command in ("scheduler", "worker", "submit", "status", "demo"):
        done = corral(command, "--help")
        assert done.returncode == 0
        assert "usage: corral" in done.stdout


def test_status_counts_ready_jobs_that_no_connected_worker_can_run(address: str) -> None:
    assert corral("submit", "etl.extract", "[]", "--connect", address).returncode == 0
    done = corral("status", "--json", "--connect", address)
    assert json.loads(done.stdout)["queues"]["default"]["waiting_for_worker"] == 1
    table = corral("status", "--once", "--connect", address)
    assert table.returncode == 0, table.stderr
    assert "no worker" in table.stdout
    [row] = [line for line in table.stdout.splitlines() if line.strip().startswith("default")]
    assert row.split()[-1] == "1", table.stdout


async def test_status_and_workers_show_how_many_slots_are_for_prefetch(cluster: Cluster) -> None:
    """A worker announces concurrency plus prefetch as its slots; the views say how many of
    them hold prefetched jobs rather than running ones."""
    cluster.start()
    cluster.worker("pf", 2, "--prefetch", "3")
    async with cluster.client() as client:
        await until_workers(client, {"pf"})
    done = corral("status", "--json", "--connect", cluster.address)
    assert done.returncode == 0, done.stderr
    [worker] = json.loads(done.stdout)["workers"]
    assert (worker["slots"], worker["prefetch"], worker["running"]) == (5, 3, 0)
    for command in ("workers", "status"):
        shown = corral(
            command, *(["--once"] if command == "status" else []), "--connect", cluster.address
        )
        assert shown.returncode == 0, shown.stderr
        assert "0/5 (3 prefetch)" in shown.stdout, shown.stdout


def test_a_task_module_that_raises_while_importing_ends_with_one_error_line(
    tmp_path: Path,
) -> None:
    """Its traceback is the clue to the user's own bug, so it is shown, then one line."""
    (tmp_path / "broken_tasks.py").write_text('raise RuntimeError("no database configured")\n')
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    done = corral("worker", "broken_tasks", "--connect", free_address(), env=env)
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("corral: error: task module 'broken_tasks' raised RuntimeError"), last
    assert "no database configured" in done.stderr
