"""Workflows (DAGs of named steps) on real processes: atomic submission, topological release,
parents' results reaching children, failure propagation, revival by re-queue, restart."""

from __future__ import annotations

import asyncio
import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from actors.client import job_spec
from actors.errors import RequestRefused
from tests.e2e.test_cli import corral
from tests.helpers.cluster import Cluster
from tests.helpers.ledger_tasks import read_ledger
from transport import protocol as wire

pytestmark = pytest.mark.slow


def step(*after: str, seconds: float = 0.0, fail_below_token: int = 0, **options: Any) -> Any:
    spec = job_spec("step", [seconds, fail_below_token], backoff=(0.05, 1, 1), **options)
    return (spec, list(after))


@pytest.fixture
def started(cluster: Cluster) -> Cluster:
    """The cluster, started: three workers with three slots each."""
    cluster.start(workers=3, slots=3)
    return cluster


def runs_by_step(cluster: Cluster) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for run in read_ledger(cluster.ledger):
        out.setdefault(run["step"], []).append(run)
    return out


async def test_a_diamond_runs_in_order_and_the_join_sees_both_parents_results(
    started: Cluster,
) -> None:
    async with started.client() as client:
        workflow_id, ids = await client.submit_workflow(
            {"a": step(), "b": step("a", seconds=0.2), "c": step("a"), "d": step("b", "c")},
            name="diamond",
        )
        result = await client.result(ids["d"], timeout=30)
        view = await client.workflow(workflow_id)
    assert set(ids) == {"a", "b", "c", "d"}
    assert result["step"] == "d"
    assert result["parents"] == {
        "b": {"step": "b", "parents": {"a": {"step": "a", "parents": {}}}},
        "c": {"step": "c", "parents": {"a": {"step": "a", "parents": {}}}},
    }
    runs = runs_by_step(started)
    assert runs["a"][0]["end"] < runs["b"][0]["start"]
    assert runs["a"][0]["end"] < runs["c"][0]["start"]
    assert max(runs["b"][0]["end"], runs["c"][0]["end"]) < runs["d"][0]["start"]
    assert view is not None
    assert next(s.name for s in view.steps) == "a"
    assert [s.status for s in view.steps] == ["SUCCEEDED"] * 4


async def test_fan_out_and_fan_in(started: Cluster) -> None:
    fan = {"root": step()} | {f"leaf{i}": step("root") for i in range(20)}
    fan["join"] = step(*(f"leaf{i}" for i in range(20)))
    async with started.client() as client:
        _, ids = await client.submit_workflow(fan)
        result = await client.result(ids["join"], timeout=30)
    assert sorted(result["parents"]) == sorted(f"leaf{i}" for i in range(20))
    runs = runs_by_step(started)
    last_leaf = max(runs[f"leaf{i}"][0]["end"] for i in range(20))
    assert last_leaf < runs["join"][0]["start"]


async def test_a_failing_middle_step_dooms_its_descendants_only_and_requeue_revives_them(
    started: Cluster,
) -> None:
    async with started.client() as client:
        workflow_id, ids = await client.submit_workflow(
            {
                "start": step(),
                "flaky": step("start", fail_below_token=2, max_retries=1),
                "after_flaky": step("flaky"),
                "end": step("after_flaky", "side"),
                "side": step("start", seconds=0.1),
                "side_end": step("side"),
            }
        )
        outcomes = await client.wait(ids.values(), timeout=30)
        status = {name: outcomes[i].status for name, i in ids.items()}
        assert status == {
            "start": "SUCCEEDED",
            "flaky": "FAILED",
            "after_flaky": "UPSTREAM_FAILED",
            "end": "UPSTREAM_FAILED",
            "side": "SUCCEEDED",
            "side_end": "SUCCEEDED",
        }
        assert f"upstream job {ids['flaky']} ended FAILED" in (outcomes[ids["end"]].error or "")

        reply = await client.requeue([ids["flaky"]])
        assert reply.job_ids == [ids["flaky"]]
        final = await client.wait(ids.values(), timeout=30)
        view = await client.workflow(workflow_id)
    assert {name: final[i].status for name, i in ids.items()} == dict.fromkeys(ids, "SUCCEEDED")
    assert view is not None
    assert {s.name: s.status for s in view.steps}["end"] == "SUCCEEDED"
    runs = runs_by_step(started)
    assert runs["flaky"][-1]["end"] < runs["after_flaky"][0]["start"]
    assert len(runs["end"]) == 1, "the revived descendants ran once, after the re-queue"


async def test_malformed_workflows_are_refused_and_leave_nothing_behind(started: Cluster) -> None:
    async with started.client() as client:
        bad = [
            ({"a": step("c"), "b": step("a"), "c": step("b")}, "cycle: a -> b -> c -> a"),
            ({"a": step("a")}, "runs after itself"),
            ({"a": step("nope")}, "not a step of this workflow"),
            ({"a": (job_spec("step", depends_on=[987654]), [])}, "unknown_parent"),
            (
                [wire.StepSpec("x", job_spec("step")), wire.StepSpec("x", job_spec("step"))],
                "used twice",
            ),
        ]
        for shape, message in bad:
            with pytest.raises(RequestRefused, match=message):
                await client.submit_workflow(shape)  # type: ignore[arg-type]
        status = await client.status()
    assert sum(status.jobs.values()) == 0


async def test_a_workflow_with_an_idempotency_key_is_created_once(started: Cluster) -> None:
    async with started.client() as client:
        shape = {"a": step(), "b": step("a")}
        first = await asyncio.gather(
            *(client.submit_workflow(shape, idempotency_key="nightly-1") for _ in range(10))
        )
        assert len({wid for wid, _ in first}) == 1
        assert len({tuple(sorted(ids.items())) for _, ids in first}) == 1
        assert sum((await client.status()).jobs.values()) == 2


async def test_a_workflow_continues_in_order_after_the_scheduler_is_sigkilled(
    cluster: Cluster,
) -> None:
    cluster.start(workers=1, slots=2)
    chain = {
        f"s{i:02d}": step(f"s{i - 1:02d}", seconds=0.05) if i else step(seconds=0.05)
        for i in range(30)
    }
    async with cluster.client() as client:
        _, ids = await client.submit_workflow(chain, name="chain")
        while (await client.status()).jobs.get("SUCCEEDED", 0) < 10:  # noqa: ASYNC110
            await asyncio.sleep(0.02)  # polling the scheduler is the point here
        cluster.restart_scheduler()
        outcomes = await client.wait(ids.values(), timeout=60)
    assert {o.status for o in outcomes.values()} == {"SUCCEEDED"}
    runs = runs_by_step(cluster)
    ordered = [runs[name][-1] for name in sorted(chain)]
    for before, after in itertools.pairwise(ordered):
        assert before["end"] < after["start"], (before["step"], after["step"])


def test_submit_file_takes_a_workflow_and_dag_shows_it(started: Cluster, tmp_path: Path) -> None:
    address = started.address
    document = {
        "name": "etl",
        "steps": [
            {"name": "extract", "task": "step"},
            {"name": "transform", "task": "step", "after": ["extract"], "priority": 5},
            {"name": "load", "task": "step", "after": ["transform"]},
        ],
    }
    path = tmp_path / "etl.json"
    path.write_text(json.dumps(document, indent=2))
    done = corral("submit", "--file", str(path), "--wait", "--connect", address)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("workflow ")
    workflow_id = lines[0].split()[1]
    assert [line.split()[0] for line in lines[1:]] == ["extract", "transform", "load"]
    assert all("SUCCEEDED" in line for line in lines[1:])
    table = corral("dag", workflow_id, "--connect", address)
    assert table.returncode == 0, table.stderr
    assert "extract" in table.stdout
    assert "3 SUCCEEDED" in table.stdout
    mermaid = corral("dag", workflow_id, "--format", "mermaid", "--connect", address).stdout
    assert mermaid.startswith("flowchart TD")
    assert mermaid.count("-->") == 2
    dot = corral("dag", workflow_id, "--format", "dot", "--connect", address).stdout
    assert dot.startswith("digraph")
    assert dot.count("->") == 2
    again = corral("submit", "--file", str(path), "--connect", address)  # e.g. after a crash
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[0] == lines[0], "the same file is the same workflow"
    cyclic = tmp_path / "cyclic.json"
    cyclic.write_text(
        json.dumps(
            {
                "steps": [
                    {"name": "a", "task": "step", "after": ["b"]},
                    {"name": "b", "task": "step", "after": ["a"]},
                ]
            }
        )
    )
    refused = corral("submit", "--file", str(cyclic), "--connect", address)
    assert refused.returncode == 1
    assert "cycle" in refused.stderr
    assert "Traceback" not in refused.stderr


async def test_a_step_still_blocked_after_a_requeue_names_the_parent_that_still_blocks_it(
    started: Cluster,
) -> None:
    """Two failed parents, the first to fail re-queued: the child stays UPSTREAM_FAILED, and
    its error names the other, not the one that now runs again."""
    async with started.client() as client:
        _, ids = await client.submit_workflow(
            {
                "first": step(fail_below_token=1, max_retries=0),  # fails under token 1 only
                "later": step(seconds=0.5, fail_below_token=99, max_retries=0),
                "join": step("first", "later"),
            }
        )
        outcomes = await client.wait(ids.values(), timeout=30)
        assert outcomes[ids["join"]].error == f"upstream job {ids['first']} ended FAILED"
        assert (await client.requeue([ids["first"]])).job_ids == [ids["first"]]
        rerun = await client.wait([ids["first"]], timeout=30)
        join = await client.job(ids["join"])
        first = await client.job(ids["first"])
    assert first is not None
    assert rerun[ids["first"]].status == "SUCCEEDED", (first.status, first.token, first.history)
    assert join is not None
    assert join.status == "UPSTREAM_FAILED"
    assert join.error == f"upstream job {ids['later']} ended FAILED"
