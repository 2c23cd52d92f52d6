"""The audit log: every scored customer, written to a Delta table in micro-batches off the request path.

A request hands its rows to a queue (a few microseconds); one writer thread drains it
every ``flush_seconds`` (or at ``batch_rows``) and appends them to the lake in one
commit, partitioned by request day. Closing the log (the server's shutdown, which
uvicorn runs on SIGTERM) stops the thread and writes what is left, so a clean stop
loses nothing. A crash (SIGKILL, power loss) loses the rows still in memory: at most
the last ``flush_seconds`` of traffic, or ``batch_rows`` rows.

One row per customer and model that scored it: the answer (role ``champion`` or
``canary``) and, when a shadow challenger runs, its silent score (role ``shadow``).
Lookups store the snapshot version and date with the feature values they read;
what-if requests store the values sent.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from datetime import UTC, datetime

import polars as pl
from prometheus_client import CollectorRegistry, Counter

from platform_assets.ml.scoring import REASONS
from resources.lake import Lake

LOG = logging.getLogger("churn_platform.serving")
AUDIT_SCHEMA = {
    "request_id": pl.String,
    "requested_at": pl.Datetime("us", "UTC"),
    "route": pl.String,
    "customer_id": pl.String,
    "feature_snapshot_version": pl.Int64,
    "feature_snapshot_date": pl.Date,
    "features": pl.String,
    "model_name": pl.String,
    "model_version": pl.String,
    "role": pl.String,
    "status": pl.String,
    "error": pl.String,
    "churn_probability": pl.Float64,
    "risk_band": pl.String,
    "needs_review": pl.Boolean,
    "top_reasons": REASONS,
    "latency_ms": pl.Float64,
    "ds": pl.Date,
}
AUDIT_COLUMNS = {
    "request_id": "Id of the HTTP request (returned to the client; shared by its rows).",
    "requested_at": "When the request arrived (UTC).",
    "route": "`id` (features looked up in the online store) or `values` (what-if: features sent).",
    "customer_id": "Customer scored (null for what-if rows sent without one).",
    "feature_snapshot_version": "Delta version of the online snapshot read (null for what-if).",
    "feature_snapshot_date": "Snapshot day of the features read (null for what-if).",
    "features": "The feature values used, as JSON.",
    "model_name": "Registered model.",
    "model_version": "Version that scored the row.",
    "role": "`champion` or `canary` (answered), `shadow` (scored silently, never returned).",
    "status": "`ok`, `not_found` (unknown customer) or `error`.",
    "error": "What failed, when status is not ok.",
    "churn_probability": "Score.",
    "risk_band": "low, medium or high.",
    "needs_review": "In the uncertain band.",
    "top_reasons": "Top SHAP reasons returned (null when reasons are off).",
    "latency_ms": "Server time from arrival to the scores (answering roles), or the shadow model's own time.",
    "ds": "Day of the request (UTC), the partition.",
}


class AuditLog:
    """Collects rows from request threads and writes them in micro-batches from one thread."""

    def __init__(self, lake: Lake, table: str, flush_seconds: float, batch_rows: int, metrics: CollectorRegistry):
        self.lake, self.table = lake, table
        self.flush_seconds, self.batch_rows = flush_seconds, batch_rows
        self._queue: queue.SimpleQueue[dict | None] = queue.SimpleQueue()
        self._written = Counter("churn_serving_audit_rows_written", "Audit rows committed to Delta.", registry=metrics)
        self._failed = Counter("churn_serving_audit_write_failures", "Audit writes that failed.", registry=metrics)
        self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
        self._thread.start()

    def record(self, columns: dict[str, list]) -> None:
        """Queue rows given as columns (every list the same length); never blocks, never writes."""
        self._queue.put(columns)

    def close(self) -> None:
        """Write everything queued, then stop the writer."""
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        pending: list[dict] = []
        rows, deadline, closing = 0, time.monotonic() + self.flush_seconds, False
        while not closing:
            try:
                item = self._queue.get(timeout=max(deadline - time.monotonic(), 0.0))
                if item is None:
                    closing = True
                else:
                    pending.append(item)
                    rows += len(item["request_id"])
            except queue.Empty:
                pass
            if pending and (closing or rows >= self.batch_rows or time.monotonic() >= deadline):
                self._write(pending)
                pending, rows = [], 0
            if time.monotonic() >= deadline:
                deadline = time.monotonic() + self.flush_seconds

    def _write(self, batches: list[dict]) -> None:
        frame = pl.concat([pl.DataFrame(b, schema=AUDIT_SCHEMA) for b in batches], how="vertical")
        try:
            self.lake.append(self.table, frame.to_arrow())
            self._written.inc(frame.height)
        except Exception:  # the server keeps answering; the failure is logged and counted
            LOG.exception(f"audit write of {frame.height} rows to {self.table} failed")
            self._failed.inc()


def now() -> datetime:
    return datetime.now(UTC)
