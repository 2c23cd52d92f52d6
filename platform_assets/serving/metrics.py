"""Prometheus metrics of the scoring API, added up over its workers.

``churn-platform serve`` points prometheus_client at a fresh folder
(``PROMETHEUS_MULTIPROC_DIR``, under ``$PLATFORM_HOME/serving/metrics/``) before any worker
starts: every worker then keeps its counters, histograms and gauges in memory-mapped files
there, and ``/metrics``, whichever worker answers it, adds them all up
(``MultiProcessCollector``). So a scrape sees the whole server, not one worker chosen by the
kernel. Each gauge says how workers add up (``multiprocess_mode``): requests in flight and
audit rows held sum over the live workers, the audit's health is the worst worker's, a
version or snapshot the highest. A worker that stops cleanly removes its gauges; one killed
leaves its last gauge values until the server restarts (its counters stay counted, as they
should). Without the variable (an app built in a test's own process) each app has its own
registry.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess, values

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.004, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


def multiprocess_mode() -> bool:
    """True when this process records into the shared folder (set before prometheus_client was imported)."""
    return bool(getattr(values.ValueClass, "_multiprocess", False))


def exposition(registry: CollectorRegistry) -> bytes:
    """The text a scrape gets: every worker's metrics added up, or this app's registry alone."""
    if multiprocess_mode():
        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged)
        return generate_latest(merged)
    return generate_latest(registry)


def worker_stopped() -> None:
    """Remove this worker's live gauges from the shared folder (a clean stop)."""
    if multiprocess_mode():
        multiprocess.mark_process_dead(os.getpid())


class Metrics:
    """The scoring API's own metrics, in a registry of its own (see the module for several workers)."""

    def __init__(self):
        self.registry = CollectorRegistry()
        labels = ["route", "model_version"]
        self.requests = Counter(
            "churn_serving_requests", "Requests answered.", [*labels, "status"], registry=self.registry
        )
        self.latency = Histogram(
            "churn_serving_request_seconds",
            "Server time of a request per version that scored it: the shared part (arrival to features looked up) "
            "plus that version's own scoring (a request no version scored: its whole time, as the champion's).",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.errors = Counter(
            "churn_serving_errors", "Failed requests by kind.", [*labels, "kind"], registry=self.registry
        )
        self.rejected = Counter(
            "churn_serving_rejected",
            "Requests refused with 503 by the admission limit.",
            ["route"],
            registry=self.registry,
        )
        self.scored = Counter(
            "churn_serving_scored_rows",
            "Rows answered by role, and how: `precomputed` (read) or `live` (scored in the request).",
            ["model_version", "role", "how"],
            registry=self.registry,
        )
        self.shadow_dropped = Counter(
            "churn_serving_shadow_dropped",
            "Shadow scorings skipped: their queue or the audit log was full, or shutdown's drain time was over.",
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "churn_serving_in_flight",
            "Requests admitted and not yet answered.",
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self.snapshot = Gauge(
            "churn_serving_feature_snapshot_version",
            "Online snapshot loaded.",
            registry=self.registry,
            multiprocess_mode="livemax",
        )
