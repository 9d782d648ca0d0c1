"""The load generator's reading of the scheduler's latency histograms."""

from __future__ import annotations

import json

from bench.harness import histogram_percentiles

PAGE = """\
# HELP corral_store_commit_seconds Commit time.
# TYPE corral_store_commit_seconds histogram
corral_store_commit_seconds_bucket{le="0.001"} 90.0
corral_store_commit_seconds_bucket{le="0.01"} 99.0
corral_store_commit_seconds_bucket{le="+Inf"} 100.0
corral_store_commit_seconds_count 100.0
corral_store_commit_seconds_sum 0.2
# HELP corral_assignment_latency_seconds Queued to leased.
# TYPE corral_assignment_latency_seconds histogram
corral_assignment_latency_seconds_bucket{le="0.001"} 1.0
corral_assignment_latency_seconds_bucket{le="10.0"} 2.0
corral_assignment_latency_seconds_bucket{le="+Inf"} 100.0
corral_assignment_latency_seconds_count 100.0
corral_assignment_latency_seconds_sum 2000.0
"""


def test_percentiles_are_bucket_bounds_in_milliseconds() -> None:
    figures = histogram_percentiles(PAGE)
    assert figures["corral_store_commit_seconds"] == {"p50": 1.0, "p99": 10.0}


def test_beyond_the_largest_bucket_is_null_so_the_json_stays_valid() -> None:
    figures = histogram_percentiles(PAGE)
    assert figures["corral_assignment_latency_seconds"] == {"p50": None, "p99": None}
    text = json.dumps(figures, allow_nan=False)  # raises on Infinity / NaN
    assert '"p50": null' in text
