"""``python -m bench --curve``: what CURVE costs (issue 16). The chosen mode (throughput,
``--rate``, or ``--floor``) runs without and with keys for ``--rounds`` rounds on the same
machine in one sitting. In a keyed cluster every process has a key (the scheduler's
folder, the workers', the bench client's as an admin), so every frame is encrypted and
every connection authenticated; in a keyed floor the forwarder, the driver and the sink
have keys. With ``--rate`` (on SQLite) a round runs both clusters at once, the jobs
alternating between them each second (``bench.curve_rate``); otherwise a round is a plain
run and a keyed run, plain first in odd rounds and keyed first in even ones, so neither
always runs on a warmer machine or in a quieter spell (``one_after_the_other``).

Single runs' p99s at 200 jobs/s are the 20th-slowest of 2,000 jobs and move by
milliseconds with what else this shared machine does, so the figures are each round's
differences: every round's plain and keyed p50/p99, their difference, the load average
before it, and as the summary the median of the rounds' differences (a drifting machine
cancels out of each round), the medians of each side, and the p50/p99 of all rounds' jobs
pooled (the p99 of 12,000 jobs over 6 rounds is the 120th slowest: a steadier estimate
than any one run's). The issue's bar: at most 15% of throughput, and 0.2 ms of p99 at 200
jobs/s.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Callable
from typing import Any

from rich.console import Console

from bench.report import percentiles, show_rows

Run = Callable[[bool], dict[str, Any]]  # one run of the mode, with CURVE or not
# One round: both sides' results (each with "load", the load average before it, and
# "samples_ms" if it has them), and which ran first ("both": at once, interleaved).
Pair = Callable[[int], tuple[dict[bool, dict[str, Any]], str]]


def _median(values: list[float]) -> float:
    return round(float(statistics.median(values)), 3)


def one_after_the_other(run: Run) -> Pair:
    """Each round a plain run and a keyed run: plain first in odd rounds, keyed first in
    even ones."""

    def pair(round_no: int) -> tuple[dict[bool, dict[str, Any]], str]:
        order = (False, True) if round_no % 2 else (True, False)
        got: dict[bool, dict[str, Any]] = {}
        for keyed in order:
            load = os.getloadavg()[0]
            got[keyed] = run(keyed)
            got[keyed]["load"] = load
        return got, "K" if order[0] else "plain"

    return pair


def compare(rounds: int, pair: Pair, console: Console) -> dict[str, Any]:
    """``rounds`` rounds of a plain and a keyed run; a row per round and the summary."""
    rows: list[dict[str, Any]] = []
    pooled: dict[bool, list[float]] = {False: [], True: []}
    lost = duplicated = 0
    for round_no in range(1, rounds + 1):
        got, first = pair(round_no)
        for keyed, result in got.items():
            pooled[keyed] += result.pop("samples_ms", [])
            lost += result["lost"]
            duplicated += result["duplicated"]
        plain, keyed_run = got[False], got[True]
        rows.append(
            {
                "round": round_no,
                "1st": first,
                "load": f"{plain['load']:.1f}"
                if first == "both"
                else f"{plain['load']:.1f}/{keyed_run['load']:.1f}",
                "jobs/s": plain["jobs_per_s"],
                "jobs/s K": keyed_run["jobs_per_s"],
                "p50": plain["latency_ms"]["p50"],
                "p50 K": keyed_run["latency_ms"]["p50"],
                "p99": plain["latency_ms"]["p99"],
                "p99 K": keyed_run["latency_ms"]["p99"],
            }
        )
    for row in rows:
        row["ratio"] = row["jobs/s K"] / row["jobs/s"] if row["jobs/s"] else 0.0
        row["+p50"] = row["p50 K"] - row["p50"]
        row["+p99"] = row["p99 K"] - row["p99"]
    shown = ("round", "1st", "load", "ratio", "p50", "p50 K", "+p50", "p99", "p99 K", "+p99")
    show_rows(
        "corral bench --curve: each round (K: with keys; ms; load average before the runs)",
        [{key: row[key] for key in shown} for row in rows],
        console,
    )
    return summarize(rows, pooled, lost, duplicated)


def summarize(
    rows: list[dict[str, Any]], pooled: dict[bool, list[float]], lost: int, duplicated: int
) -> dict[str, Any]:
    """The medians of the rounds' figures and differences, and the pooled percentiles."""

    def column(key: str) -> list[float]:
        return [float(row[key]) for row in rows]

    summary: dict[str, Any] = {
        "mode": "curve",
        "rounds": len(rows),
        "jobs_per_s_plain": _median(column("jobs/s")),
        "jobs_per_s_curve": _median(column("jobs/s K")),
        "throughput_ratio": _median(column("ratio")),  # the median of the rounds' ratios
        "p50_ms_plain": _median(column("p50")),
        "p50_ms_curve": _median(column("p50 K")),
        "p99_ms_plain": _median(column("p99")),
        "p99_ms_curve": _median(column("p99 K")),
        "p50_added_ms": _median(column("+p50")),  # the median of the rounds' differences
        "p99_added_ms": _median(column("+p99")),
        "p99_added_ms_range": [round(min(column("+p99")), 3), round(max(column("+p99")), 3)],
        "rounds_curve_p99_higher": sum(1 for d in column("+p99") if d > 0),
        "lost": lost,
        "duplicated": duplicated,
    }
    if pooled[False] and pooled[True]:
        plain, keyed = percentiles(pooled[False]), percentiles(pooled[True])
        summary["pooled_p50_ms"] = [plain["p50"], keyed["p50"]]  # plain, curve
        summary["pooled_p99_ms"] = [plain["p99"], keyed["p99"]]
        summary["pooled_p99_added_ms"] = round(keyed["p99"] - plain["p99"], 3)
    return summary
