"""DAG mode: a wide workflow (layers of steps, each after two steps of the layer before)
and a long chain, timed from submission to the last step's completion."""

from __future__ import annotations

import random
import time
from typing import Any

from actors import AsyncClient, job_spec
from bench.harness import Cluster


def wide(layers: int, width: int, rng: random.Random) -> dict[str, tuple[Any, list[str]]]:
    steps: dict[str, tuple[Any, list[str]]] = {}
    spec = job_spec("bench.noop")
    for layer in range(layers):
        for i in range(width):
            after = []
            if layer:
                after = sorted({f"L{layer - 1}.{rng.randrange(width)}" for _ in range(2)})
            steps[f"L{layer}.{i}"] = (spec, after)
    return steps


def chain(length: int) -> dict[str, tuple[Any, list[str]]]:
    spec = job_spec("bench.noop")
    return {f"s{i}": (spec, [f"s{i - 1}"] if i else []) for i in range(length)}


async def run_dag(
    cluster: Cluster, layers: int, width: int, chain_length: int, workers: int, concurrency: int
) -> dict[str, Any]:
    cluster.start_workers(workers, concurrency)
    results: dict[str, Any] = {}
    async with AsyncClient(cluster.address, connect_timeout=20, request_timeout=600) as client:
        for label, steps in (
            ("wide", wide(layers, width, random.Random(1))),
            ("chain", chain(chain_length)),
        ):
            started = time.perf_counter()
            _, ids = await client.submit_workflow(steps, name=f"bench-{label}")
            submitted = time.perf_counter() - started
            outcomes = await client.wait(ids.values(), timeout=1200)
            seconds = time.perf_counter() - started
            results[label] = {
                "steps": len(steps),
                "edges": sum(len(after) for _, after in steps.values()),
                "submit_s": round(submitted, 3),
                "seconds": round(seconds, 3),
                "steps_per_s": round(len(steps) / seconds, 1),
                "succeeded": sum(o.status == "SUCCEEDED" for o in outcomes.values()),
                "ids": list(ids.values()),
            }
    return results
