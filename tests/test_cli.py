"""The README's main command, run as a user runs it, in a temp home."""

import os

import dagster as dg
import pytest
from deltalake import DeltaTable


@pytest.mark.slow
def test_make_demo_builds_the_graph_in_a_fresh_home(demo_home):
    home, done = demo_home
    out = done.stdout
    assert f"Lake (Delta):        {home / 'lake'}" in out
    assert "training_set" in out and "0 failed" in out
    for table in ("customers", "sessions", "support_tickets", "promotions", "plan_changes", "cancellations"):
        assert DeltaTable(str(home / "lake" / "raw" / table)).version() >= 0
    assert (home / "warehouse" / "churn.duckdb").exists()

    # The run is recorded in the instance that `make dev` opens.
    assert (home / "dagster" / "dagster.yaml").exists()
    os.environ["DAGSTER_HOME"] = str(home / "dagster")
    try:
        with dg.DagsterInstance.get() as instance:
            runs = instance.get_runs(dg.RunsFilter(tags={"platform/trigger": "demo"}))
            assert [r.job_name for r in reversed(runs)] == ["ingest_raw", "train_model", "score_day"]
            assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
    finally:
        del os.environ["DAGSTER_HOME"]
