"""Training and scoring work on any dbt model that declares its column roles."""

import json
import shutil
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pytest
from dagster_dbt import DbtCliResource

from platform_assets.ml.bands import bands_of, fit_bands
from platform_assets.ml.evaluation import metrics
from platform_assets.ml.feature_spec import discover
from platform_assets.ml.profiles import build_profile, reference_rows
from platform_assets.ml.scoring import DayScorer, ScoringConfig
from platform_assets.ml.training import SCORE, SplitRefused, labels, train
from platform_assets.monitoring.drift import Thresholds, feature_drift, judge_features, reference_overlap
from platform_assets.serving.scorer import ServedModel
from platform_assets.serving.store import FeatureSnapshot

pytestmark = pytest.mark.world

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


def test_one_snapshot_without_a_declared_split_is_refused(machines):
    spec, frame = build_and_load(machines)
    one_day = frame.filter(frame["as_of"] == frame["as_of"].max())
    with pytest.raises(SplitRefused, match=r"history too short for a time split: 1 snapshot days \(2026-03-23"):
        train(one_day, spec, PARAMS, max_rounds=10)


def _parse_with_label_meta(project: Path, meta: str):
    yml = project / "models" / "machine_health.yml"
    yml.write_text(yml.read_text().replace("{meta: {role: label, horizon_days: 28}}", meta))
    DbtCliResource(project_dir=str(project)).cli(["parse", "--quiet"], target_path=Path("target")).wait()
    return discover(project / "target" / "manifest.json", "machine_health", "machine_health")


def test_a_label_without_a_horizon_is_refused(machines):
    with pytest.raises(ValueError, match=r"label column .failed_within_30d. .* declares no horizon_days"):
        _parse_with_label_meta(machines, "{meta: {role: label}}")


def test_a_horizon_0_label_is_refused(machines):
    with pytest.raises(ValueError, match="horizon_days 0 is refused: a label must look at least 1 day past"):
        _parse_with_label_meta(machines, "{meta: {role: label, horizon_days: 0}}")


def _declare_holdout(machines: Path) -> None:
    """One snapshot, split by a hash of the entity declared in SQL and YAML."""
    sql = machines / "models" / "machine_health.sql"
    sql.write_text(
        sql.read_text().replace(
            "    machine_id,\n    as_of,\n",
            "    machine_id,\n    as_of,\n"
            "    case when hash(machine_id) % 5 = 0 then 'validation' else 'train' end as holdout,\n",
        )
        + "where as_of = date '2026-03-23'\n"
    )
    yml = machines / "models" / "machine_health.yml"
    yml.write_text(
        yml.read_text().replace(
            "      - name: vibration_mm_s\n",
            "      - name: holdout\n        description: Which side of the split.\n"
            "        config: {meta: {role: split}}\n      - name: vibration_mm_s\n",
        )
    )


def test_a_declared_split_column_trains_without_a_time_dimension(machines):
    """One snapshot, split by a hash of the entity declared in SQL and YAML: trains and validates on unseen machines."""
    _declare_holdout(machines)
    spec, frame = build_and_load(machines)
    assert spec.split == "holdout" and frame["as_of"].n_unique() == 1
    trained = train(frame, spec, PARAMS, max_rounds=100, early_stopping_rounds=10)
    assert trained.split.kind == "column"
    assert set(trained.validation["holdout"]) == {"validation"}
    assert trained.validation["machine_id"].is_in(frame.filter(frame["holdout"] == "train")["machine_id"]).sum() == 0


def test_drift_on_a_one_snapshot_dataset_is_not_the_day_compared_with_itself(machines):
    """The reference is the training side of the split; the scored day holds those rows, so it is not compared."""
    _declare_holdout(machines)
    spec, frame = build_and_load(machines)
    trained = train(frame, spec, PARAMS, max_rounds=100, early_stopping_rounds=10)
    rows, record = reference_rows(frame, trained.split, spec, "training", 300_000)
    assert set(rows["holdout"]) == {"train"} and rows.height == frame.filter(frame["holdout"] == "train").height
    profile = build_profile(rows, list(spec.features), trained.model.predict_frame(rows)) | {"reference": record}
    day = frame["as_of"].cast(pl.Date)[0]  # the partition day the report judges
    # The figures alone would pass, day after day: the day holds the reference's own rows.
    figures = judge_features(feature_drift(profile, frame, list(spec.features)), Thresholds())
    assert figures.severity == "ok" and figures.report["psi"].max() < 0.01
    assert reference_overlap(profile, day) == (
        "this day is part of the reference (training rows): not a drift comparison (the reference is the training "
        f"rows (split holdout = train): {rows.height} rows of {day})"
    )


def test_bands_where_most_rows_are_positive_follow_the_validation_scores_in_batch_and_online(machines):
    """87% of the machines fail: a fixed cut at 0.3 calls nearly all of them high risk and explains them all."""
    sql = machines / "models" / "machine_health.sql"
    sql.write_text(sql.read_text().replace("> 0.95 as failed_within_30d", "> 0.45 as failed_within_30d"))
    spec, frame = build_and_load(machines)
    assert frame["failed_within_30d"].mean() > 0.8
    trained = train(frame, spec, PARAMS, max_rounds=300, early_stopping_rounds=20)
    profile = json.loads(
        json.dumps({"features": {}, "bands": fit_bands(trained.validation[SCORE].to_numpy()).to_dict()})
    )
    latest = frame.filter(pl.col("as_of") == pl.col("as_of").max())  # a validation day
    assert (trained.model.predict_frame(latest) >= 0.3).mean() > 0.9

    keys = [spec.entity, spec.snapshot]
    batch = DayScorer(trained.model, latest, ScoringConfig(), bands_of(profile), keys=keys, constants=[]).scores
    shares = dict(batch["risk_band"].value_counts(normalize=True).iter_rows())
    assert shares == pytest.approx({"high": 0.05, "medium": 0.15, "low": 0.80}, abs=0.04)
    explained = batch["explained_because"].is_not_null().mean()
    assert explained == pytest.approx(0.20, abs=0.05)  # the reasons follow the bands

    snapshot = FeatureSnapshot.of(1, latest.select(*keys, *spec.features), *keys)
    served = ServedModel.of("machines", "1", "run", trained.model, snapshot, profile)
    assert served.score(served.matrix, 3).risk_band == batch["risk_band"].to_list()
    assert served.score(served.matrix, 0).needs_review == batch["needs_review"].to_list()
