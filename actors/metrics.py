"""Metrics: what the actors count, exported in Prometheus text format (prometheus-client).

Each actor keeps its own counters and, once a second, publishes an immutable
snapshot of them to the ``MetricsBoard`` (a message to itself, handled between
other messages, so no actor's state is read from outside its task). A scrape
reads only those snapshots: ``actors.http.server`` serves them at /metrics from
the scheduler's own event loop. Nothing here touches SQLite, so a scrape costs
the scheduler next to nothing, and figures are at most one second old.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prometheus_client.core import CollectorRegistry, Metric

# Seconds. Assignment latency (ready -> leased) and commit latency are both
# sub-millisecond when idle and tens of milliseconds when saturated.
LATENCY_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
)

JOB_EVENTS = ("submitted", "succeeded", "failed", "retried", "cancelled", "upstream_failed")


class Histogram:
    """A histogram owned by one actor (no locks); ``snapshot()`` is what gets published."""

    def __init__(self, bounds: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value

    def snapshot(self) -> tuple[list[tuple[str, float]], float]:
        buckets: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip(self.bounds, self.counts, strict=False):
            running += count
            buckets.append((repr(bound), running))
        buckets.append(("+Inf", running + self.counts[-1]))
        return buckets, self.total


class MetricsBoard:
    """The latest snapshot from each actor; a Prometheus collector over them."""

    def __init__(self) -> None:
        self._parts: dict[str, dict[str, Any]] = {}

    def publish(self, part: str, snapshot: dict[str, Any]) -> None:
        # Replace, never mutate: the HTTP thread may be reading the old dict.
        self._parts = {**self._parts, part: snapshot}

    def part(self, name: str) -> dict[str, Any]:
        return self._parts.get(name, {})

    def collect(self) -> Iterator[Metric]:
        # Imported at the first scrape: prometheus-client (and the http.server, wsgiref and
        # email modules it imports) is a tenth of a scheduler's start-up imports, and a
        # scheduler without --metrics-port never needs it.
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        scheduler, strategy = self.part("scheduler"), self.part("strategy")
        dispatcher, store = self.part("dispatcher"), self.part("store")
        by_queue: dict[tuple[str, str], int] = scheduler.get("by_queue", {})
        for event in JOB_EVENTS:
            family = CounterMetricFamily(
                f"corral_jobs_{event}", f"Jobs {event}, by queue.", labels=["queue"]
            )
            for (queue, name), value in sorted(by_queue.items()):
                if name == event:
                    family.add_metric([queue], value)
            yield family
        states = GaugeMetricFamily("corral_jobs", "Jobs by state.", labels=["state"])
        for state, value in sorted(scheduler.get("jobs", {}).items()):
            states.add_metric([state], value)
        yield states
        jobs = scheduler.get("jobs", {})
        yield GaugeMetricFamily(
            "corral_jobs_running", "Jobs leased to a worker now.", value=jobs.get("RUNNING", 0)
        )
        yield GaugeMetricFamily(
            "corral_dead_letters",
            "Jobs in the dead-letter queue (FAILED).",
            value=jobs.get("FAILED", 0),
        )
        depth = GaugeMetricFamily("corral_queue_depth", "Ready jobs, by queue.", labels=["queue"])
        for queue, value in sorted(strategy.get("depth", {}).items()):
            depth.add_metric([queue], value)
        yield depth
        workers = GaugeMetricFamily(
            "corral_workers", "Connected workers, by health.", labels=["health"]
        )
        for health in ("alive", "suspect", "dead", "draining"):
            workers.add_metric([health], dispatcher.get("workers", {}).get(health, 0))
        yield workers
        for name, part, key, doc in (
            (
                "corral_assignment_latency_seconds",
                scheduler,
                "assign_latency",
                "Time from a job becoming ready to its lease being committed.",
            ),
            (
                "corral_store_commit_seconds",
                store,
                "commit_latency",
                "Time to commit one group of writes to SQLite.",
            ),
        ):
            if key in part:
                buckets, total = part[key]
                yield HistogramMetricFamily(name, doc, buckets=buckets, sum_value=total)
        quota = CounterMetricFamily(
            "corral_quota_refused",
            "Requests refused over a client's allowance, by limit (jobs, bytes, rate, waits).",
            labels=["limit"],
        )
        for limit in ("jobs", "bytes", "rate", "waits"):
            quota.add_metric([limit], scheduler.get(f"quota_refused_{limit}", 0))
        yield quota
        for name, part, key, doc in (
            ("corral_refused_results", scheduler, "refused_results", "Stale-token results."),
            ("corral_refused_leases", dispatcher, "refused_leases", "Stale lease claims."),
            ("corral_bad_frames", self.part("gateway"), "bad_frames", "Malformed frames refused."),
            (
                "corral_unknown_peer_frames",
                self.part("gateway"),
                "unknown_peer_frames",
                "Worker frames from a peer that has not said hello (e.g. after a restart).",
            ),
            (
                "corral_refused_heartbeats",
                dispatcher,
                "refused_heartbeats",
                "Heartbeats claiming more leases than the worker's slots.",
            ),
            (
                "corral_unheld_leases",
                dispatcher,
                "unheld_leases",
                "Granted leases a worker did not hold; re-queued without an attempt.",
            ),
            (
                "corral_events_dropped",
                self.part("events"),
                "dropped",
                "Events dropped because a subscriber fell behind.",
            ),
            (
                "corral_forbidden_frames",
                self.part("gateway"),
                "forbidden_frames",
                "Frames a key's role does not allow, or from a key no longer accepted.",
            ),
            (
                "corral_banned_frames",
                self.part("gateway"),
                "banned_frames",
                "Frames dropped unread from a client not listened to after going over its quota.",
            ),
            (
                "corral_refused_subscriptions",
                self.part("events"),
                "refused_subscriptions",
                "Subscriptions refused over --max-subscriptions.",
            ),
            ("corral_store_commits", store, "commits", "SQLite transactions committed."),
            ("corral_store_checkpoints", store, "checkpoints", "WAL checkpoints run."),
            (
                "corral_store_writes_ahead_of_bulk",
                store,
                "writes_ahead_of_bulk",
                "Writes (leases, results) committed ahead of a bulk submission's inserts.",
            ),
        ):
            yield CounterMetricFamily(name, doc, value=part.get(key, 0))


def registry_for(board: MetricsBoard) -> CollectorRegistry:
    from prometheus_client.core import CollectorRegistry

    registry = CollectorRegistry(auto_describe=False)
    registry.register(board)
    return registry
