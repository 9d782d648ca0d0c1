"""The load generator itself: a small run of every mode finishes with nothing lost or
duplicated, and its JSON carries every documented key."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.helpers.procs import ROOT

pytestmark = pytest.mark.slow

KEYS = {
    "mode",
    "jobs",
    "completed",
    "seconds",
    "jobs_per_s",
    "latency_ms",
    "scheduler_rss_mb",
    "lost",
    "duplicated",
}


def bench(*args: str, exit_status: tuple[int, ...] = (0,)) -> dict:  # type: ignore[type-arg]
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--json", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode in exit_status, done.stderr[-3000:]
    return json.loads(done.stdout)  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("args", "mode"),
    [
        (["--jobs", "2000", "--workers", "2"], "throughput"),
        (["--jobs", "1000", "--workers", "1", "--status-every", "0.05"], "throughput"),
        (["--jobs", "600", "--workers", "2", "--prefetch", "8", "--job-ms", "1"], "throughput"),
        (["--rate", "100", "--duration", "2", "--workers", "1"], "rate"),
        (["--backlog", "2000", "--workers", "2"], "backlog"),
        (["--inproc", "--jobs", "2000"], "inproc"),
        (["--floor", "--rate", "200", "--duration", "1"], "floor"),
        (["--fuzz", "--frames", "600"], "fuzz"),
    ],
)
def test_each_load_mode_completes_with_nothing_lost_or_duplicated(
    args: list[str], mode: str
) -> None:
    result = bench(*args)
    assert set(result) >= KEYS
    assert result["mode"] == mode
    assert result["completed"] == result["jobs"]
    assert (result["lost"], result["duplicated"]) == (0, 0)
    assert set(result["latency_ms"]) == {"p50", "p95", "p99", "max"}
    if mode in ("rate", "floor"):
        assert 0 < result["latency_ms"]["p50"] <= result["latency_ms"]["p99"]
    if "--prefetch" in args:  # the workers were started with it, the jobs were naps
        assert (result["prefetch"], result["job_ms"]) == (8, 1.0)


def test_the_idle_gap_diagnostic_prints_a_row_per_gap() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.idle", "5"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line for line in done.stdout.splitlines() if " ms " in line and "|" in line]
    assert [row.split()[0] for row in rows] == ["0", "0.2", "1", "5", "20"]


# The scaling, chaos and dag modes are a test each (together ~33 s): xdist can run them at
# the same time in different processes.
def test_the_scaling_mode_completes() -> None:
    scaling = bench("--scale", "1,2", "--jobs", "1000")
    assert [r["workers"] for r in scaling["runs"]] == [1, 2]
    assert (scaling["lost"], scaling["duplicated"]) == (0, 0)


def test_the_chaos_mode_completes() -> None:
    # A smoke test: every fault at least once, no long jobs (tests/e2e/test_chaos.py has
    # them). 300 jobs of 50 ms on 8 slots keep the workers busy past the first kill (1 s)
    # and pause (1.5 s), and the killed worker's leases lapse (2 s) past the scheduler's
    # first restart (3 s). (500 jobs of 5 ms were done in 0.8 s on a quiet machine, before
    # any fault.)
    chaos = bench("--chaos", "--jobs", "300", "--job-seconds", "0.05", "--workers", "2",
                  "--concurrency", "4", "--long-every", "0", "--kill-every", "1",
                  "--pause-every", "1.5", "--restart-every", "3", "--prefetch", "4")  # fmt: skip
    assert chaos["ok"] is True
    assert chaos["wrong_token"] == chaos["overlaps"] == chaos["lost"] == 0
    assert chaos["kills"] >= 1
    assert chaos["pauses"] >= 1
    assert chaos["restarts"] >= 1


def test_the_dag_mode_completes() -> None:
    dag = bench("--dag", "--layers", "3", "--width", "50", "--chain", "20", "--workers", "2")
    assert dag["wide"]["succeeded"] == 150
    assert dag["chain"]["succeeded"] == 20
    assert dag["wide"]["lost"] == dag["chain"]["duplicated"] == 0


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_ceiling_runs_every_job_once_and_its_database_holds_each_as_succeeded(
    backend: str, request: pytest.FixtureRequest
) -> None:
    db = ["--db", request.getfixturevalue("postgres_dsn")] if backend == "postgresql" else []
    result = bench("--ceiling", "--jobs", "600", "--workers", "2", "--concurrency", "8", *db)
    assert set(result) >= KEYS
    assert (result["mode"], result["backend"]) == ("ceiling", backend)
    assert result["completed"] == result["stored_succeeded"] == 600
    assert (result["lost"], result["duplicated"]) == (0, 0)
    assert result["commits"] >= 2  # the jobs' inserts, then their results


def test_a_throughput_run_with_the_ceiling_prints_both_figures_and_their_ratio() -> None:
    result = bench("--jobs", "500", "--workers", "1", "--with-ceiling")
    assert result["mode"] == "throughput"
    assert (result["lost"], result["duplicated"]) == (0, 0)
    assert (result["ceiling_lost"], result["ceiling_duplicated"]) == (0, 0)
    ratio = result["jobs_per_s"] / result["ceiling_jobs_per_s"]
    assert result["ratio_to_ceiling"] == pytest.approx(ratio, abs=0.001)


def test_the_curve_comparison_runs_both_ways_and_loses_nothing() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--curve", "--jobs", "300", "--workers", "1",
         "--rounds", "1", "--json"],
        capture_output=True, text=True, timeout=120, cwd=ROOT, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["mode"] == "curve"
    assert result["jobs_per_s_plain"] > 0
    assert result["jobs_per_s_curve"] > 0
    assert (result["lost"], result["duplicated"]) == (0, 0)


@pytest.mark.parametrize(
    "mode", [["--floor"], ["--rate", "100", "--workers", "1"]], ids=["floor", "rate"]
)
def test_the_curve_comparison_at_a_rate_pairs_the_rounds_and_pools_their_jobs(
    mode: list[str],
) -> None:
    result = bench("--curve", *mode, "--duration", "1", "--rounds", "2")
    assert result["mode"] == "curve"
    assert result["rounds"] == 2
    assert (result["lost"], result["duplicated"]) == (0, 0)
    low, high = result["p99_added_ms_range"]
    assert low <= result["p99_added_ms"] <= high
    assert 0 <= result["rounds_curve_p99_higher"] <= 2
    assert min(result["pooled_p50_ms"] + result["pooled_p99_ms"]) > 0


def test_the_paired_hop_bench_prints_each_kind_of_connection() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.curve_hop", "20", "2"],
        capture_output=True, text=True, timeout=120, cwd=ROOT, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    for kind in ("plain", "keyed", "keyed, User-Id not read"):
        assert any(line.strip().startswith(f"{kind} ") and "p99" in line for line in lines)


@pytest.mark.xdist_group("leaders")  # see ./dev test
def test_chaos_with_standby_schedulers_kills_the_leader_and_measures_the_takeover(
    postgres_dsn: str,
) -> None:
    """A short run of ``--schedulers 3 --kill-leader-every S`` (bench/leaders.py): one or
    two leader kills under load, with the worker faults. Its exit status also says whether
    the takeovers kept the issue's median bound (3 s), which a loaded test machine may
    miss; the guarantees are asserted here, and the hard bound of 5 s."""
    chaos = bench(
        "--chaos", "--db", postgres_dsn, "--schedulers", "3", "--kill-leader-every", "1",
        "--jobs", "400", "--job-seconds", "0.1", "--workers", "2", "--long-every", "0",
        "--kill-every", "1.5", "--pause-every", "2",
        exit_status=(0, 1),
    )  # fmt: skip
    assert chaos["leader_kills"] >= 1
    assert chaos["completed"] == chaos["jobs"] == 400
    assert chaos["lost"] == chaos["committed_twice"] == chaos["wrong_token"] == 0
    assert chaos["overlaps"] == chaos["stale_starts"] == chaos["late_finishes"] == 0
    assert len(chaos["takeovers"]) == chaos["leader_kills"]
    for queued, leading, started in chaos["takeovers"]:
        assert queued >= 100, "killed under load"
        assert leading is not None
        assert started is not None
        assert leading <= started < 5.0


def test_the_delayed_and_rate_limit_modes_measure_and_lose_nothing() -> None:
    delayed = bench("--delayed", "--jobs", "40", "--spacing", "5")
    assert delayed["mode"] == "delayed"
    assert delayed["started_early"] == 0, "never handed to a worker before its time"
    assert (delayed["lost"], delayed["duplicated"]) == (0, 0)
    assert set(delayed["started_late_ms"]) == {"p50", "p95", "p99", "max"}
    limited = bench("--rate-limit", "40", "--duration", "2")
    assert limited["mode"] == "rate-limit"
    assert (limited["lost"], limited["duplicated"]) == (0, 0)
    # Never over the rate: no window of the starts the scheduler recorded holds more than
    # burst + rate * T (all 200-odd at once without the limit). The workers' start lines
    # cannot say it exactly: a loaded machine delays some deliveries by more than the 25 ms
    # between tokens, and they bunch (94 in the 2 s window once, at a load of 12).
    assert limited["over_bound"] <= 0, "never over the rate"
    assert limited["started_in_window"] > 0
