"""Property-based (hypothesis) on real workers: any random DAG runs with every child starting
only after all its parents ended SUCCEEDED; any random DAG plus one back-edge is refused and
leaves nothing behind."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors.client import job_spec
from actors.errors import RequestRefused
from tests.helpers.cluster import Cluster
from tests.helpers.ledger_tasks import read_ledger

pytestmark = pytest.mark.slow


@st.composite
def dags(draw: st.DrawFn, min_edges: int = 0) -> dict[str, list[str]]:
    """Step name -> the steps it runs after; edges only go from lower to higher index."""
    n = draw(st.integers(min_value=2 if min_edges else 1, max_value=10))
    after: dict[str, list[str]] = {}
    for i in range(n):
        parents = draw(st.sets(st.integers(0, i - 1), max_size=3)) if i else set()
        after[f"n{i}"] = [f"n{p}" for p in sorted(parents)]
    if sum(map(len, after.values())) < min_edges:
        after[f"n{n - 1}"] = sorted({*after[f"n{n - 1}"], "n0"})
    return after


def as_workflow(after: dict[str, list[str]]) -> dict[str, Any]:
    return {name: (job_spec("step", [0.0]), parents) for name, parents in after.items()}


@pytest.fixture
def started(cluster: Cluster) -> Cluster:
    """The cluster, started: two workers with four slots each."""
    cluster.start(workers=2, slots=4)
    return cluster


def test_random_dags_release_every_child_only_after_all_its_parents_succeeded(
    started: Cluster,
) -> None:
    tried: list[int] = []

    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
    @given(dags())
    def check(after: dict[str, list[str]]) -> None:
        async def run() -> dict[str, int]:
            async with started.client() as client:
                _, ids = await client.submit_workflow(as_workflow(after))
                outcomes = await client.wait(ids.values(), timeout=30)
            assert {o.status for o in outcomes.values()} == {"SUCCEEDED"}
            return ids

        ids = asyncio.run(run())
        tried.append(len(after))
        runs = {r["job"]: r for r in read_ledger(started.ledger)}
        for name, parents in after.items():
            child = runs[ids[name]]
            for parent in parents:
                assert runs[ids[parent]]["end"] < child["start"], (after, name, parent)

    check()
    assert len(tried) >= 20, "hypothesis ran the examples"


def test_random_dags_with_a_back_edge_are_refused_and_create_nothing(started: Cluster) -> None:
    tried: list[int] = []

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    @given(dags(min_edges=1), st.data())
    def check(after: dict[str, list[str]], data: st.DataObject) -> None:
        edges = [(parent, child) for child, parents in after.items() for parent in parents]
        parent, child = data.draw(st.sampled_from(edges))
        cyclic = {name: list(ps) for name, ps in after.items()}
        cyclic[parent].append(child)  # parent now also runs after its own child

        async def run() -> None:
            async with started.client() as client:
                with pytest.raises(RequestRefused, match="cycle"):
                    await client.submit_workflow(as_workflow(cyclic))
                assert sum((await client.status()).jobs.values()) == 0

        asyncio.run(run())
        tried.append(len(after))

    check()
    assert len(tried) >= 20, "hypothesis ran the examples"
