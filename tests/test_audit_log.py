"""The scoring API's audit writer on its own, on a real Delta table in a temp folder (no server).

The server-level behaviour (a lake that cannot be written, back-pressure, shutdown order) is
in tests/test_serving.py; these cover what a live server cannot be made to do from outside:
a writer thread that dies, and a batch the writer cannot build.
"""

from datetime import UTC, datetime

import polars as pl
import pytest
from prometheus_client import CollectorRegistry

from platform_assets.serving.audit import AuditFull, AuditLog
from resources.lake import Lake

TABLE = "serving/requests"


def _rows(n: int, request_id: str) -> dict[str, list]:
    at = datetime.now(UTC)
    one = {
        "request_id": request_id,
        "requested_at": at,
        "route": "id",
        "feature_snapshot_version": 1,
        "feature_snapshot_date": None,
        "features": "{}",
        "model_name": "churn_model",
        "model_version": "1",
        "role": "champion",
        "status": "ok",
        "error": None,
        "churn_probability": 0.5,
        "risk_band": "high",
        "needs_review": False,
        "top_reasons": None,
        "latency_ms": 1.0,
        "api_key_name": None,
        "ds": at.date(),
    }
    return {**{k: [v] * n for k, v in one.items()}, "customer_id": [str(i) for i in range(n)]}


def test_a_writer_thread_that_dies_fails_health_counts_and_refuses_rows(tmp_path, monkeypatch):
    def crash(self):
        raise RuntimeError("boom")

    monkeypatch.setattr(AuditLog, "_drain", crash)
    metrics = CollectorRegistry()
    log = AuditLog(Lake(root=str(tmp_path)), TABLE, 0.1, 100, metrics)
    log._thread.join(10)
    assert log.problem == "the audit writer died: RuntimeError: boom"
    assert metrics.get_sample_value("churn_serving_audit_writer_deaths_total") == 1
    assert metrics.get_sample_value("churn_serving_audit_healthy") == 0
    with pytest.raises(AuditFull, match="died"):  # an answer is refused (the API's 503), never queued to no one
        log.record(_rows(2, "answer"))
    assert log.record(_rows(1, "shadow"), required=False) is False
    assert metrics.get_sample_value("churn_serving_audit_rows_refused_total", {"kind": "answer"}) == 2


def test_a_batch_that_cannot_be_built_is_dropped_and_counted_and_the_writer_goes_on(tmp_path):
    metrics = CollectorRegistry()
    log = AuditLog(Lake(root=str(tmp_path)), TABLE, 0.1, 100, metrics)
    log.record(_rows(2, "bad") | {"latency_ms": ["slow", "slower"]})  # not a Float64: the frame cannot be built
    log.record(_rows(3, "good"))
    log.close()
    written = pl.read_delta(str(tmp_path / TABLE))  # today's writer died on the bad batch: no table at all
    assert written["request_id"].to_list() == ["good"] * 3
    assert metrics.get_sample_value("churn_serving_audit_rows_dropped_total") == 2
    assert metrics.get_sample_value("churn_serving_audit_rows_written_total") == 3
    assert log.problem is None
