"""``python -m bench --curve``: what CURVE costs (issue 16). The chosen mode (throughput, or
``--rate``) runs without and with keys, alternating, for ``--rounds`` rounds on the same
machine in one sitting: every process of the keyed runs has a key (the scheduler's
folder, the workers', the bench client's as an admin), so every frame is encrypted and
every connection authenticated. Prints each run and the medians side by side: jobs/s and
their ratio, and at a steady rate submit->start p50/p99 and their difference. The issue's
bar: at most 15% of throughput, and 0.2 ms of p99 at 200 jobs/s.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

from rich.console import Console

from bench.report import show_rows

Run = Callable[[bool], dict[str, Any]]  # one run of the mode, with CURVE or not


def compare(rounds: int, run: Run, console: Console) -> dict[str, Any]:
    """``rounds`` interleaved pairs (plain first in odd rounds, keyed first in even ones,
    so neither always runs on a warmer machine); the rows and the medians."""
    rows: list[dict[str, Any]] = []
    for round_no in range(1, rounds + 1):
        order = (False, True) if round_no % 2 else (True, False)
        for curve in order:
            result = run(curve)
            rows.append(
                {
                    "round": round_no,
                    "curve": "yes" if curve else "no",
                    "jobs_per_s": result["jobs_per_s"],
                    "p50_ms": result["latency_ms"]["p50"],
                    "p99_ms": result["latency_ms"]["p99"],
                    "lost": result["lost"],
                    "duplicated": result["duplicated"],
                }
            )
    show_rows("corral bench --curve: each run", rows, console)
    plain = [r for r in rows if r["curve"] == "no"]
    keyed = [r for r in rows if r["curve"] == "yes"]

    def median(runs: list[dict[str, Any]], key: str) -> float:
        return float(statistics.median(r[key] for r in runs))

    summary = {
        "mode": "curve",
        "rounds": rounds,
        "jobs_per_s_plain": median(plain, "jobs_per_s"),
        "jobs_per_s_curve": median(keyed, "jobs_per_s"),
        "p50_ms_plain": median(plain, "p50_ms"),
        "p50_ms_curve": median(keyed, "p50_ms"),
        "p99_ms_plain": median(plain, "p99_ms"),
        "p99_ms_curve": median(keyed, "p99_ms"),
        "lost": sum(r["lost"] for r in rows),
        "duplicated": sum(r["duplicated"] for r in rows),
    }
    plain_rate = summary["jobs_per_s_plain"]
    summary["throughput_ratio"] = summary["jobs_per_s_curve"] / plain_rate if plain_rate else 0.0
    summary["p99_added_ms"] = summary["p99_ms_curve"] - summary["p99_ms_plain"]
    return summary
