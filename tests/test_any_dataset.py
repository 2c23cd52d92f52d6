"""Training and scoring work on any dbt model that declares its column roles."""

import shutil
from pathlib import Path

import duckdb
import numpy as np
import pytest
from dagster_dbt import DbtCliResource

from platform_assets.ml.evaluation import metrics
from platform_assets.ml.feature_spec import discover
from platform_assets.ml.training import SCORE, labels, train

FIXTURE = Path(__file__).parent / "fixtures" / "machines_dbt"
PARAMS = {"learning_rate": 0.1, "num_leaves": 7, "min_data_in_leaf": 20, "seed": 1, "deterministic": True}


@pytest.fixture
def machines(tmp_path, monkeypatch):
    """A copy of the fixture dbt project, building into its own DuckDB file."""
    project = tmp_path / "machines_dbt"
    shutil.copytree(FIXTURE, project)
    monkeypatch.setenv("MACHINES_DB", str(tmp_path / "machines.duckdb"))
    return project


def build_and_load(project: Path):
    DbtCliResource(project_dir=str(project)).cli(["build", "--quiet"], target_path=Path("target")).wait()
    spec = discover(project / "target" / "manifest.json", "machine_health", "machine_health")
    with duckdb.connect(str(project.parent / "machines.duckdb"), read_only=True) as con:
        frame = con.sql(f"select * from {spec.training_relation}").pl()
    return spec, frame


def test_another_dataset_trains_and_scores_with_its_declared_roles(machines):
    spec, frame = build_and_load(machines)
    assert (spec.entity, spec.snapshot, spec.label) == ("machine_id", "as_of", "failed_within_30d")
    assert spec.features == ("vibration_mm_s", "temperature_c", "site", "age_days")
    assert spec.label_horizon_days == 28

    trained = train(frame, spec, PARAMS, max_rounds=300, early_stopping_rounds=20)
    assert trained.model.categories == {"site": ["plant_a", "plant_b", "plant_c"]}
    assert trained.split.validation == sorted(frame["as_of"].unique().to_list())[-2:]
    assert max(trained.split.train) <= min(trained.split.validation) - np.timedelta64(28, "D")
    scores = metrics(labels(trained.validation, spec), trained.validation[SCORE].to_numpy())
    assert scores["roc_auc"] > 0.75, scores

    latest = frame.filter(frame["as_of"] == frame["as_of"].max())
    contributions = trained.model.contributions(latest)
    np.testing.assert_allclose(contributions.sum(axis=1), trained.model.raw_scores(latest), atol=1e-9)


def test_the_same_data_in_another_row_order_trains_the_same_model(machines):
    spec, frame = build_and_load(machines)
    params = {**PARAMS, "bagging_fraction": 0.8, "bagging_freq": 1}  # bagging draws rows by position
    first = train(frame, spec, params, max_rounds=300, early_stopping_rounds=20)
    shuffled = frame.sample(fraction=1.0, shuffle=True, seed=5)
    again = train(shuffled, spec, params, max_rounds=300, early_stopping_rounds=20)
    assert first.model.booster.model_to_string() == again.model.booster.model_to_string()


def test_a_feature_documented_in_dbt_is_trained_without_python_changes(machines):
    sql = machines / "models" / "machine_health.sql"
    yml = machines / "models" / "machine_health.yml"
    sql.write_text(
        sql.read_text().replace(
            "    round(50.0 + 40.0 * u2, 2) as temperature_c,",
            "    round(50.0 + 40.0 * u2, 2) as temperature_c,\n    round(30.0 + 50.0 * u3, 1) as humidity_pct,",
        )
    )
    yml.write_text(
        yml.read_text().replace(
            "      - name: site\n",
            "      - name: humidity_pct\n"
            "        description: Mean relative humidity around the machine.\n"
            "        config: {meta: {role: feature}}\n"
            "      - name: site\n",
        )
    )
    spec, frame = build_and_load(machines)
    assert "humidity_pct" in spec.features
    trained = train(frame, spec, PARAMS, max_rounds=300, early_stopping_rounds=20)
    assert "humidity_pct" in trained.model.features
    importance = dict(trained.importance().iter_rows())
    assert importance["humidity_pct"] > 0  # the label depends on it, so the model uses it
