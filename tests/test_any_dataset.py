"""Training and scoring work on any dbt model that declares its column roles."""

import json
import shutil
from datetime import date, timedelta
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pytest
from dbt.cli.main import dbtRunner

from platform_assets.decisions.scope import DecisionScope
from platform_assets.ml.bands import bands_of, fit_bands
from platform_assets.ml.evaluation import metrics
from platform_assets.ml.feature_spec import datasets, discover
from platform_assets.ml.profiles import build_profile, reference_rows
from platform_assets.ml.scoring import DayScorer, ScoringConfig
from platform_assets.ml.training import SCORE, SplitRefused, labels, train
from platform_assets.monitoring.drift import Thresholds, feature_drift, judge_features, reference_overlap
from platform_assets.monitoring.outcomes import snapshot_to_judge, unseen
from platform_assets.serving.scorer import ServedModel
from platform_assets.serving.store import FeatureSnapshot
from platform_assets.tables import CAMPAIGN_LOG

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


def dbt(project: Path, command: str) -> None:
    """dbt in this process (dbt's programmatic API): a fresh dbt process per test costs seconds of imports."""
    result = dbtRunner().invoke([command, "--quiet", "--project-dir", str(project), "--profiles-dir", str(project)])
    if not result.success:
        raise result.exception or RuntimeError(f"dbt {command} failed in {project}")


def build_and_load(project: Path):
    dbt(project, "build")
    spec = discover(project / "target" / "manifest.json", "machine_health", "machine_health")
    with duckdb.connect(str(project.parent / "machines.duckdb")) as con:  # dbt, in this process, holds it open
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


def _edit(path: Path, old: str, new: str) -> None:
    """Change the copied project as a data engineer would: by editing its SQL or YAML (an edit that finds
    nothing to change fails, so a test never runs on the unchanged fixture by mistake)."""
    text = path.read_text()
    assert old in text, f"{path.name} has no {old!r} to edit"
    path.write_text(text.replace(old, new))


def test_a_feature_documented_in_dbt_is_trained_without_python_changes(machines):
    _edit(
        machines / "models" / "machine_health.sql",
        "    round(50.0 + 40.0 * u2, 2) as temperature_c,",
        "    round(50.0 + 40.0 * u2, 2) as temperature_c,\n    round(30.0 + 50.0 * u3, 1) as humidity_pct,",
    )
    _edit(
        machines / "models" / "machine_health.yml",
        "      - name: site\n",
        "      - name: humidity_pct\n"
        "        description: Mean relative humidity around the machine.\n"
        "        config: {meta: {role: feature}}\n"
        "      - name: site\n",
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
    _edit(project / "models" / "machine_health.yml", "{meta: {role: label, horizon_days: 28}}", meta)
    dbt(project, "parse")
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
    _edit(
        sql,
        "    machine_id,\n    as_of,\n",
        "    machine_id,\n    as_of,\n    case when hash(machine_id) % 5 = 0 then 'validation' else 'train' end as holdout,\n",
    )
    sql.write_text(sql.read_text() + "where as_of = date '2026-03-23'\n")
    _edit(
        machines / "models" / "machine_health.yml",
        "      - name: vibration_mm_s\n",
        "      - name: holdout\n        description: Which side of the split.\n"
        "        config: {meta: {role: split}}\n      - name: vibration_mm_s\n",
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
    _edit(machines / "models" / "machine_health.sql", "> 0.95 as failed_within_30d", "> 0.45 as failed_within_30d")
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


def _more_weeks(project: Path, weeks: int, horizon: int, split: bool = False) -> None:
    """The fixture over more weeks (the later ones play the snapshots scored after training), snapshot days as
    dates, another label horizon, and optionally a split column by a hash of the machine."""
    sql = project / "models" / "machine_health.sql"
    text = (
        sql.read_text()
        .replace("range(0, 12) as w(week)", f"range(0, {weeks}) as w(week)")
        # A date, as the platform's snapshots (daily partitions) are; date + days is a timestamp in DuckDB.
        .replace(
            "cast('2026-01-05' as date) + to_days(cast(7 * week as integer)) as as_of",
            "cast(cast('2026-01-05' as date) + to_days(cast(7 * week as integer)) as date) as as_of",
        )
    )
    yml = project / "models" / "machine_health.yml"
    meta = yml.read_text().replace("horizon_days: 28}", f"horizon_days: {horizon}}}")
    if split:
        text = text.replace(
            "    machine_id,\n    as_of,\n",
            "    machine_id,\n    as_of,\n"
            "    case when hash(machine_id) % 5 = 0 then 'validation' else 'train' end as holdout,\n",
        )
        meta = meta.replace(
            "      - name: vibration_mm_s\n",
            "      - name: holdout\n        description: Which side of the split.\n"
            "        config: {meta: {role: split}}\n      - name: vibration_mm_s\n",
        )
    sql.write_text(text)
    yml.write_text(meta)


TRAINED_UNTIL = date(2026, 3, 23)  # week 11: the history the model is trained on ends here


def test_weekly_snapshots_12_weeks_after_training_are_judged_and_the_overlap_is_explained(machines):
    """Weekly snapshots, a 30-day horizon (not a multiple of 7). Trained on weeks 0-11, v1 learned snapshots up to
    2026-02-09; the snapshot 28 days later shares two days of outcomes with it and is left out, saying why; the
    snapshot 12 weeks later is judged on every machine, and it is not the validation set."""
    _more_weeks(machines, weeks=24, horizon=30)
    spec, frame = build_and_load(machines)
    assert spec.label_horizon_days == 30
    trained = train(frame.filter(pl.col("as_of") <= TRAINED_UNTIL), spec, PARAMS, max_rounds=300)
    split = trained.split
    last = max(split.train)
    assert (last, split.validation) == (date(2026, 2, 9), [date(2026, 3, 16), date(2026, 3, 23)])

    # A weekly pipeline runs on snapshot days: 30 days before one is never a snapshot, the Monday before it is.
    weeks = sorted(frame["as_of"].unique().to_list())
    twelve_weeks_on = last + timedelta(weeks=12)
    assert snapshot_to_judge(twelve_weeks_on + timedelta(weeks=5), 30, weeks) == twelve_weeks_on

    close = last + timedelta(days=28)
    rows = frame.filter(pl.col("as_of") == close)
    kept, left_out, _ = unseen(rows, split, "1", close, spec.snapshot, "machine_health")
    assert kept.is_empty()
    assert left_out == (
        f"{rows.height} of {rows.height} matured rows left out: their snapshot 2026-03-09 is within 30 days of v1's "
        "last training snapshot 2026-02-09 (28 days after it), so their labels overlap what it learned "
        "(unseen from 2026-03-11)"
    )

    later = frame.filter(pl.col("as_of") == twelve_weeks_on)
    kept, left_out, evaluated = unseen(later, split, "1", twelve_weeks_on, spec.snapshot, "machine_health")
    assert kept.height == later.height == 600 and left_out == ""
    assert evaluated == (
        "unseen by v1: snapshot 2026-05-04 is 84 days after its last training snapshot 2026-02-09 "
        "(at least the 30-day horizon), not one of its validation days"
    )
    scores = metrics(labels(kept, spec), trained.model.predict_frame(kept))
    assert scores["roc_auc"] > 0.75, scores


def test_with_a_split_column_later_weeks_are_judged_on_the_validation_machines_only(machines):
    """A declared split column: on a week after the training data, the train machines are left out (the model
    learned them), the validation machines are judged, and the report says they are also the validation set."""
    _more_weeks(machines, weeks=20, horizon=28, split=True)
    spec, frame = build_and_load(machines)
    trained = train(frame.filter(pl.col("as_of") <= TRAINED_UNTIL), spec, PARAMS, max_rounds=300)
    assert trained.split.kind == "column" and max(trained.split.train) == TRAINED_UNTIL

    week = date(2026, 5, 4)
    later = frame.filter(pl.col("as_of") == week)
    validation = later.filter(pl.col("holdout") == "validation")
    kept, left_out, evaluated = unseen(later, trained.split, "1", week, spec.snapshot, "machine_health")
    assert set(kept["machine_id"]) == set(validation["machine_id"]) and set(kept["holdout"]) == {"validation"}
    assert set(kept["machine_id"]) == set(trained.validation["machine_id"])  # the validation machines again
    assert left_out == (
        f"{later.height - validation.height} of {later.height} matured rows left out: their entities are the ones "
        "v1 trained on (holdout = train), here on snapshot 2026-05-04; only its validation entities are judged"
    )
    assert evaluated == (
        "v1's validation entities (holdout = validation) on snapshot 2026-05-04, which it neither trained nor "
        "validated on: entities it never learned, who are also its validation set"
    )
    scores = metrics(labels(kept, spec), trained.model.predict_frame(kept))
    assert scores["roc_auc"] > 0.7, scores


def _declare(project: Path, declaration: str):
    _edit(
        project / "models" / "machine_health.yml",
        "    description: Weekly health snapshot of each machine, with whether it failed within 30 days.\n",
        "    description: Weekly health snapshot of each machine, with whether it failed within 30 days.\n"
        f"    config: {{meta: {{churn_platform: {declaration}}}}}\n",
    )
    dbt(project, "parse")
    return datasets(project / "target" / "manifest.json")


def test_a_dataset_that_declares_decisions_keeps_them_under_its_model_name(machines):
    (dataset,) = _declare(machines, "{registered_model: machines, decisions: {value_column: age_days}}")
    scope = DecisionScope.of(dataset)
    assert scope.value_column == "age_days" and scope.uplift_model == "uplift_model_machines"
    assert scope.folder == ("machines",)
    assert scope.campaign_log == "machines/decisions/campaign_log"
    assert scope.review_queue == "machines/decisions/review_queue"
    assert scope.predictions == "machines/predictions/churn_predictions"
    # the columns are the platform's own tables', wherever the dataset keeps them
    assert scope.campaign_log.schema == CAMPAIGN_LOG.schema and scope.campaign_log.schema


def test_a_dataset_without_decisions_makes_none_and_a_wrong_value_column_is_refused(machines):
    (dataset,) = _declare(machines, "{registered_model: machines}")
    assert dataset.value_column is None
    with pytest.raises(ValueError, match=r"machines declares no decisions\.value_column"):
        DecisionScope.of(dataset)


def test_a_value_column_the_scoring_model_lacks_is_refused_naming_it(machines):
    with pytest.raises(ValueError, match=r"decisions.value_column: 'monthly_fee' is not a documented column of the "):
        _declare(machines, "{registered_model: machines, decisions: {value_column: monthly_fee}}")
