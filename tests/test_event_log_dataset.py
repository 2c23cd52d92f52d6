"""docs/onboarding.md's second example, performed: a time-split dataset dbt builds from an event log.

The seed is the built-in simulator's business exported by the page's own command
(customers, sessions, cancellations; deterministic), the SQL and YAML are the page's
blocks, and dbt builds one row per customer and weekly snapshot with a 30-day label
(not a multiple of 7). The dataset sits in a dbt project of its own, and the platform's
training, profile, drift, performance and banding code runs on it in process: the
page's bash block, `dg launch` lines included, runs once as a user runs it (the last test).
"""

import itertools
import json
import os
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
import pytest
from dagster_dbt import DbtCliResource

from platform_assets.ml.bands import bands_of, fit_bands
from platform_assets.ml.evaluation import metrics
from platform_assets.ml.feature_spec import datasets, discover
from platform_assets.ml.profiles import build_profile, reference_rows
from platform_assets.ml.scoring import DayScorer, ScoringConfig
from platform_assets.ml.training import SCORE, labels, train
from platform_assets.monitoring.drift import (
    Thresholds,
    feature_drift,
    judge_features,
    reference_overlap,
    served_outside_reference,
)
from platform_assets.monitoring.outcomes import snapshot_to_judge, unseen
from tests.onboarding_page import page_blocks, run_example, write_blocks

pytestmark = pytest.mark.world

CHECKOUT = Path(__file__).resolve().parents[1]
MODEL = "subscription_weeks"
PREFIX = "subscription_churn"  # the asset key prefix the page's YAML declares
PARAMS = {
    "learning_rate": 0.05,
    "num_leaves": 7,
    "min_data_in_leaf": 50,
    "seed": 1,
    "deterministic": True,
    "num_threads": 1,
}
# The platform's dbt_project.yml makes a model in a folder of its own a table; this project says the same.
PROJECT = """name: event_log
version: "1.0.0"
profile: event_log
config-version: 2
model-paths: ["models"]
seed-paths: ["seeds"]
models:
  event_log:
    +materialized: table
"""
PROFILES = """event_log:
  target: dev
  outputs:
    dev:
      type: duckdb
      path: "{{ env_var('EVENT_LOG_DB') }}"
      threads: 1
"""


def export_command() -> str:
    """The page's export line, as written (the rest of its bash block is section 4's commands)."""
    [line] = [line for line in page_blocks("bash", example=2)[0].splitlines() if "export-event-log" in line]
    return line


@pytest.fixture(scope="module")
def event_log(tmp_path_factory):
    """The page's seeds, SQL and YAML in a dbt project of their own, seeded and built (tests included)."""
    tmp = tmp_path_factory.mktemp("event_log")
    project = tmp / "dbt_project"
    project.mkdir()
    (project / "dbt_project.yml").write_text(PROJECT)
    (project / "profiles.yml").write_text(PROFILES)
    write_blocks(project, example=2)
    env = {**os.environ, "PLATFORM_DBT_PROJECT_DIR": str(project)}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", export_command()], cwd=CHECKOUT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    with pytest.MonkeyPatch.context() as patch:  # the profile's path, for this module only
        patch.setenv("EVENT_LOG_DB", str(tmp / "event_log.duckdb"))
        yield project


def build(project: Path, model: str = MODEL) -> tuple:
    """dbt build (the whole project, or only ``model`` once the seeds are in), then its roles and its rows."""
    args = ["build", "--quiet", *(["--select", model] if model != MODEL else [])]
    DbtCliResource(project_dir=str(project)).cli(args, target_path=Path("target")).wait()
    spec = discover(project / "target" / "manifest.json", model, model)
    with duckdb.connect(os.environ["EVENT_LOG_DB"], read_only=True) as con:
        frame = con.sql(f"select * from {spec.training_relation}").pl()
    return spec, frame


@pytest.fixture(scope="module")
def weeks(event_log):
    return build(event_log)


def week(frame: pl.DataFrame, day: date) -> pl.DataFrame:
    return frame.filter(pl.col("snapshot_date") == day)


def test_the_export_is_the_event_log_the_page_describes(event_log, weeks):
    spec, frame = weeks
    counts = {p.stem: sum(1 for _ in p.open()) - 1 for p in sorted((event_log / "seeds").glob("*.csv"))}
    assert counts == {
        "subscription_cancellations": 276,
        "subscription_customers": 1002,
        "subscription_sessions": 77210,
    }
    assert (spec.entity, spec.snapshot, spec.label, spec.label_horizon_days) == (
        "customer_id",
        "snapshot_date",
        "cancelled_within_30d",
        30,
    )
    assert spec.split is None and spec.segments == ("plan", "region")
    days = sorted(frame["snapshot_date"].unique().to_list())
    assert days[0] == date(2026, 1, 29) and days[-1] == date(2026, 7, 23) and len(days) == 26
    assert {b - a for a, b in itertools.pairwise(days)} == {timedelta(weeks=1)}
    assert frame.select(pl.struct(spec.entity, spec.snapshot).is_unique().all()).item()
    assert frame[spec.label].mean() == pytest.approx(0.05, abs=0.01)


@pytest.fixture(scope="module")
def trained(weeks):
    spec, frame = weeks
    return train(frame, spec, PARAMS, max_rounds=300, early_stopping_rounds=20)


def test_time_split_and_validation_figure_as_the_page_says(weeks, trained):
    spec, _ = weeks
    split = trained.split
    assert (split.kind, split.validation) == ("time", [date(2026, 7, 16), date(2026, 7, 23)])
    assert (split.train[0], split.train[-1], len(split.train)) == (date(2026, 1, 29), date(2026, 6, 11), 20)
    scores = metrics(labels(trained.validation, spec), trained.validation[SCORE].to_numpy())
    assert scores["rows"] == 1418 and scores["roc_auc"] == pytest.approx(0.7, abs=0.05), scores
    assert labels(trained.validation, spec).sum() == 72  # too few per plan or region for fairness (50 each)


def test_the_validation_week_is_compared_with_the_training_weeks_and_does_not_drift(event_log, weeks, trained):
    """The reference is what the YAML declares, the training weeks by default: a validation week is compared, and
    does not drift; a training week is reported as part of the reference, not passed as a comparison."""
    spec, frame = weeks
    [dataset] = [d for d in datasets(event_log / "target" / "manifest.json") if d.training_model == MODEL]
    assert (dataset.registered_model, dataset.drift_reference) == ("subscription_churn", "training")
    rows, record = reference_rows(frame, trained.split, spec, dataset.drift_reference, 300_000)
    assert set(rows["snapshot_date"].unique()) == set(trained.split.train)
    profile = build_profile(rows, list(spec.features), trained.model.predict_frame(rows)) | {"reference": record}
    profile = json.loads(json.dumps(profile))  # as logged with the version and read back by the report
    for day in trained.split.validation:
        verdict = judge_features(feature_drift(profile, week(frame, day), list(spec.features)), Thresholds())
        assert reference_overlap(profile, day) is None
        assert (verdict.severity, verdict.reasons) == ("ok", ("no feature drifted",)), verdict.report
    last_trained = trained.split.train[-1]
    assert reference_overlap(profile, last_trained) == (
        "this day is part of the reference (training rows): not a drift comparison (the reference is the training "
        f"rows (the time split's training days): {rows.height} rows of 2026-01-29..2026-06-11 (20 snapshot days))"
    )


def test_an_uncapped_tenure_would_drift_every_later_week(event_log, weeks, trained):
    """Why the page's SQL caps tenure: the same reference on the uncapped column warns on the validation week.
    So the pass above is the data's, not a check that cannot fail."""
    spec, frame = weeks
    with duckdb.connect(os.environ["EVENT_LOG_DB"], read_only=True) as con:
        signups = con.sql("select customer_id, signup_date from subscription_customers").pl()
    uncapped = frame.join(signups, on="customer_id").with_columns(
        tenure_days=(pl.col("snapshot_date") - pl.col("signup_date")).dt.total_days()
    )
    rows, record = reference_rows(uncapped, trained.split, spec, "training", 300_000)
    features = list(spec.features)
    profile = build_profile(rows, features, trained.model.predict_frame(rows)) | {"reference": record}
    day = trained.split.validation[-1]
    verdict = judge_features(feature_drift(profile, week(uncapped, day), features), Thresholds())
    assert verdict.severity == "warn" and verdict.drifted["feature"].to_list() == ["tenure_days"]
    assert verdict.reasons[0].startswith("tenure_days drifted (PSI 0.1")


TRAINED_UNTIL = date(2026, 4, 23)  # the history v1 is trained on ends here: weeks 0 to 12


def test_a_snapshot_12_weeks_after_training_is_judged_on_every_customer(weeks):
    """Trained on the weeks up to 2026-04-23, v1's last training snapshot is 2026-03-12. Four weeks later shares
    two days of outcomes with it and is left out, saying why; twelve weeks later is judged on every customer on the
    books, as unseen, with its 30-day outcome matured in the log."""
    spec, frame = weeks
    model = train(frame.filter(pl.col("snapshot_date") <= TRAINED_UNTIL), spec, PARAMS, max_rounds=300)
    split = model.split
    last = split.train[-1]
    assert (last, split.validation) == (date(2026, 3, 12), [date(2026, 4, 16), date(2026, 4, 23)])

    scored = sorted(frame["snapshot_date"].unique().to_list())
    later_day = last + timedelta(weeks=12)
    # Its outcome matures 30 days on, a Saturday: the weekly snapshot judged that day is the one 12 weeks on.
    assert snapshot_to_judge(later_day + timedelta(days=30), 30, scored) == later_day

    close_day = last + timedelta(days=28)
    close = week(frame, close_day)
    kept, left_out, _ = unseen(close, split, "1", close_day, spec.snapshot, MODEL)
    assert kept.is_empty()
    assert left_out == (
        f"{close.height} of {close.height} matured rows left out: their snapshot 2026-04-09 is within 30 days of v1's "
        "last training snapshot 2026-03-12 (28 days after it), so their labels overlap what it learned "
        "(unseen from 2026-04-11)"
    )

    later = week(frame, later_day)
    kept, left_out, evaluated = unseen(later, split, "1", later_day, spec.snapshot, MODEL)
    assert kept.height == later.height > 650 and left_out == ""
    assert evaluated == (
        "unseen by v1: snapshot 2026-06-04 is 84 days after its last training snapshot 2026-03-12 "
        "(at least the 30-day horizon), not one of its validation days"
    )
    assert kept[spec.label].sum() >= 20  # outcomes to judge on, not only survivors
    scores = metrics(labels(kept, spec), model.model.predict_frame(kept))
    assert scores["roc_auc"] > 0.6, scores


def test_online_answers_from_reference_weeks_are_not_compared(weeks, trained):
    """Served rows whose features are of a training week are the reference's own: left out of the online
    comparison, as a batch day in the reference is, and all of them make the day part of the reference."""
    spec, frame = weeks
    rows, record = reference_rows(frame, trained.split, spec, "training", 300_000)
    profile = {"reference": record}
    own, later = trained.split.train[-1], trained.split.validation[-1]
    served = pl.concat([week(frame, own).head(300), week(frame, later).head(500)]).select(
        pl.col("snapshot_date").alias("feature_snapshot_date")
    )
    compared, why = served_outside_reference(profile, served)
    assert compared.height == 500 and set(compared["feature_snapshot_date"]) == {later}
    assert why == (
        "300 of 800 served rows are part of the reference (training rows): their features are of snapshot "
        f"2026-06-11 (the reference is the training rows (the time split's training days): {rows.height} rows of "
        "2026-01-29..2026-06-11 (20 snapshot days))"
    )
    compared, why = served_outside_reference(profile, served.head(300))
    assert compared.is_empty() and why.startswith("300 of 300 served rows are part of the reference")
    what_if = pl.DataFrame({"feature_snapshot_date": [None, later]}, schema={"feature_snapshot_date": pl.Date})
    assert served_outside_reference(profile, what_if) == (what_if, None)  # features given in the request


LOOSE = "    coalesce(b.cancelled_on <= b.snapshot_date + 30, false) as cancelled_within_30d\nfrom on_the_books as b\n"


def test_bands_where_most_customer_weeks_are_positive_follow_the_validation_scores(event_log):
    """A loose churn definition (cancelled, or fewer than 20 sessions in the next 30 days), as a model beside the
    page's: most customer-weeks are positive. A fixed cut at 0.3 would call nearly every customer high risk; the
    bands from the validation scores put 5% high, 15% medium, 80% low, and only those get reasons."""
    folder = event_log / "models" / "subscriptions"
    sql, yml = (folder / "subscription_weeks.sql").read_text(), (folder / "_subscriptions.yml").read_text()
    assert LOOSE in sql
    quiet = (
        "    coalesce(b.cancelled_on <= b.snapshot_date + 30, false) or (\n"
        "        select count(*) from {{ ref('subscription_sessions') }} as n\n"
        "        where n.customer_id = b.customer_id and cast(n.started_at as date) > b.snapshot_date\n"
        "            and cast(n.started_at as date) <= b.snapshot_date + 30\n"
        "    ) < 20 as cancelled_within_30d\n"
        "from on_the_books as b\n"
    )
    (folder / "loose_weeks.sql").write_text(sql.replace(LOOSE, quiet))
    (folder / "_loose.yml").write_text(
        yml.replace("name: subscription_weeks", "name: loose_weeks").replace("subscription_churn", "loose_churn")
    )
    spec, frame = build(event_log, model="loose_weeks")
    assert frame[spec.label].mean() > 0.7
    model = train(frame, spec, PARAMS, max_rounds=300, early_stopping_rounds=20)
    profile = json.loads(json.dumps({"features": {}, "bands": fit_bands(model.validation[SCORE].to_numpy()).to_dict()}))
    day = model.split.validation[-1]
    latest = week(frame, day)
    assert (model.model.predict_frame(latest) >= 0.3).mean() > 0.9  # what the fixed cuts would call high

    keys = [spec.entity, spec.snapshot]
    batch = DayScorer(model.model, latest, ScoringConfig(), bands_of(profile), keys=keys, constants=[]).scores
    shares = dict(batch["risk_band"].value_counts(normalize=True).iter_rows())
    assert shares == pytest.approx({"high": 0.05, "medium": 0.15, "low": 0.80}, abs=0.03)
    assert batch["explained_because"].is_not_null().mean() == pytest.approx(0.20, abs=0.03)


@pytest.fixture(scope="module")
def launched(tmp_path_factory):
    """Section 4 of the second example as a new user runs it: the page's blocks join the platform's dbt project,
    then the page's bash block, export to monitored weeks, in a fresh home."""
    done = run_example(tmp_path_factory.mktemp("event_log_launched"), example=2)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DAGSTER_HOME", str(done["home"] / "dagster"))
        with dg.DagsterInstance.get() as instance:
            yield instance


def _check(instance: dg.DagsterInstance, asset: str, name: str):
    key = dg.AssetCheckKey(dg.AssetKey([PREFIX, asset]), name)
    [record] = instance.event_log_storage.get_asset_check_execution_history(key, limit=1)
    return record.evaluation


def _metadata(instance: dg.DagsterInstance, asset: str, partition: str | None = None) -> dict:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(
            asset_key=dg.AssetKey([PREFIX, asset]), asset_partitions=[partition] if partition else None
        ),
        limit=1,
    ).records
    return {k: v.value for k, v in records[0].asset_materialization.metadata.items()}


@pytest.mark.slow
def test_the_pages_commands_gate_score_and_monitor_as_the_page_says(launched):
    """What the page says its commands gave: v1 promoted with fairness not evaluated (a WARN), the validation week
    2026-07-23 compared with the training weeks and not drifted, and its matured performance the validation set."""
    gate = _metadata(launched, "champion_model")
    assert gate["decision"] == "promoted", gate
    fairness = _check(launched, "champion_model", "gate_fairness")
    assert not fairness.passed and fairness.severity == dg.AssetCheckSeverity.WARN
    assert "not evaluated: no two values of any of plan, region had at least 50 churners" in fairness.description
    drift = _check(launched, "feature_drift_report", "feature_drift")
    assert drift.passed and drift.metadata["partition"].value == "2026-07-23", drift.description
    assert "no feature drifted" in drift.description
    performance = _metadata(launched, "model_performance", "2026-08-22")
    assert performance["evaluated_rows"] == (
        "v1's validation rows (snapshot 2026-07-23 validated it): this is its validation set again"
    )
