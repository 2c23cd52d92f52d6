"""docs/extending.md, performed: a feature added in dbt alone reaches every part of the platform."""

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from deltalake import DeltaTable

from tests.conftest import FEATURE, demo_env

pytestmark = pytest.mark.world


@pytest.fixture(scope="module")
def extended(demo_home):
    """The demo's home: built by ``churn-platform prepare`` and the demo from a copy of the project with the
    feature added in SQL and YAML alone (tests/conftest.py ``add_feature``)."""
    home = demo_home[0]
    return {"home": home, "env": demo_env(home), "project": home.parent / "dbt_project"}


def _latest(home: Path, key: str) -> dict:
    os.environ["DAGSTER_HOME"] = str(home / "dagster")
    try:
        with dg.DagsterInstance.get() as instance:
            event = instance.get_latest_materialization_event(dg.AssetKey(key))
            return {k: v.value for k, v in event.asset_materialization.metadata.items()}
    finally:
        del os.environ["DAGSTER_HOME"]


@pytest.mark.slow
def test_the_feature_is_in_the_catalog(extended):
    probe = (
        "import dagster as dg; from platform_assets.definitions import defs; "
        "spec = defs.resolve_asset_graph().get(dg.AssetKey('customer_features')); "
        "print([(c.name, c.description) for c in spec.metadata['dagster/column_schema'].columns])"
    )
    done = subprocess.run([sys.executable, "-c", probe], env=extended["env"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"('{FEATURE}', 'Support tickets of the last 30 days per session" in done.stdout
    built = _latest(extended["home"], "customer_features")["dagster/column_schema"]
    assert FEATURE in [c.name for c in built.columns]


@pytest.mark.slow
def test_the_next_model_trains_on_it_and_ranks_it(extended):
    model = _latest(extended["home"], "candidate_model")
    assert FEATURE in model["features"]
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{extended['home'] / 'mlflow' / 'mlflow.db'}")
    importance = mlflow.artifacts.load_dict(f"runs:/{model['mlflow_run_id']}/feature_importance.json")
    assert importance[FEATURE] > 0
    assert FEATURE in model["model_card"]


@pytest.mark.slow
def test_predictions_name_it_among_their_reasons(extended):
    predictions = pl.from_arrow(
        DeltaTable(str(extended["home"] / "lake" / "predictions" / "churn_predictions")).to_pyarrow_table()
    )
    named = predictions.select(pl.col("top_reasons").list.eval(pl.element().struct.field("feature"))).explode(
        "top_reasons"
    )
    assert FEATURE in set(named["top_reasons"])


@pytest.mark.slow
def test_drift_monitoring_watches_it(extended):
    drift = pl.from_arrow(
        DeltaTable(str(extended["home"] / "lake" / "monitoring" / "feature_drift")).to_pyarrow_table()
    )
    assert FEATURE in set(drift["feature"])
    assert FEATURE in _latest(extended["home"], "feature_drift_report")["drift"]
