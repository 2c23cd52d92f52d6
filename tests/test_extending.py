"""docs/extending.md, performed: a feature added in dbt alone reaches every part of the platform."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from deltalake import DeltaTable

pytestmark = pytest.mark.world

CHECKOUT = Path(__file__).resolve().parents[1]
FEATURE = "tickets_per_session_30d"
SQL = "    coalesce(t.tickets_30d, 0) / (coalesce(u.sessions_30d, 0) + 1.0) as tickets_per_session_30d,\n"
YAML = f"""      - name: {FEATURE}
        description: "Support tickets of the last 30 days per session of the last 30 days."
        config:
          meta:
            role: feature
"""


def _add_feature(project: Path) -> None:
    """Steps 1 and 2 of the walkthrough: SQL and YAML, nothing else."""
    sql = project / "models" / "marts" / "customer_features.sql"
    text = sql.read_text()
    anchor = "    coalesce(t.tickets_30d, 0) as tickets_30d,\n"
    assert anchor in text
    sql.write_text(text.replace(anchor, anchor + SQL))
    yml = project / "models" / "marts" / "_marts.yml"
    text = yml.read_text()
    anchor = "      - name: unresolved_tickets_30d\n"
    assert anchor in text
    yml.write_text(text.replace(anchor, YAML + anchor, 1))


@pytest.fixture(scope="module")
def extended(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("extending")
    project = tmp / "dbt_project"
    shutil.copytree(CHECKOUT / "dbt_project", project, ignore=shutil.ignore_patterns("target", "logs"))
    _add_feature(project)
    env = {k: v for k, v in os.environ.items() if k not in ("DAGSTER_HOME", "PLATFORM_HOME")}
    env.update(
        {
            "PLATFORM_HOME": str(tmp / "home"),
            "PLATFORM_DBT_PROJECT_DIR": str(project),
            "PLATFORM_SIM_CUSTOMERS": "1500",
            "PLATFORM_SIM_DAYS": "150",
        }
    )
    cli = str(Path(sys.executable).parent / "churn-platform")
    for command in ("prepare", "demo"):  # step 3: build and train as README says
        done = subprocess.run([cli, command], env=env, capture_output=True, text=True, timeout=1200)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return {"home": tmp / "home", "env": env, "project": project}


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
