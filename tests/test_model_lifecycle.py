"""The model lifecycle on real LightGBM, MLflow (SQLite) and dbt, in a temp home."""

import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl
import pytest
import yaml

from platform_assets.definitions import build_definitions
from platform_assets.defs.datasets import default
from platform_assets.defs.ml.assets import PROMOTION_CHECK, model_assets
from platform_assets.defs.predictions.assets import predictions_asset
from platform_assets.rollout.rules import PROMOTE, apply_action
from platform_assets.serving.state import live_challenger
from platform_assets.tables import PREDICTIONS
from resources.dbt import dbt_project
from resources.model_registry import CANDIDATE, CHALLENGER, CHAMPION, ModelRegistry
from tests.conftest import QUIET, day, ingest, memory_instance, module_home, range_tags
from tests.test_registry import flaky_registry
from tests.test_ui import _free_port

pytestmark = pytest.mark.world

SIZE = {"PLATFORM_SIM_CUSTOMERS": "5000", "PLATFORM_SIM_DAYS": "150"}
LAST = day(149)


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    """150 days of a 5,000-customer business, trained, promoted, and its last day scored."""
    with module_home(tmp_path_factory, "lifecycle", SIZE) as home:
        defs = build_definitions()
        with memory_instance() as instance:
            ingest(defs, instance, day(0), LAST)
            built = defs.resolve_job_def("train_model").execute_in_process(
                instance=instance, tags=range_tags(day(0), LAST), run_config=QUIET
            )
            scored = defs.resolve_job_def("score_day").execute_in_process(
                instance=instance, partition_key=LAST.isoformat(), run_config=QUIET
            )
            yield {"defs": defs, "instance": instance, "built": built, "scored": scored, "home": home}


def _metadata(platform, key: str) -> dict:
    event = platform["instance"].get_latest_materialization_event(dg.AssetKey(key))
    return {k: v.value for k, v in event.asset_materialization.metadata.items()}


def _materialize(platform, assets, **kwargs):
    return dg.materialize(
        assets, instance=platform["instance"], resources=platform["defs"].resources, raise_on_error=False, **kwargs
    )


def _checks(result) -> dict:
    return {
        e.event_specific_data.check_name: e.event_specific_data
        for e in result.all_events
        if e.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION
    }


def test_the_pipeline_trains_promotes_and_scores(platform):
    assert platform["built"].success and platform["scored"].success
    registry = platform["defs"].resources["registry"]
    assert registry.version(CHAMPION).version == registry.version(CANDIDATE).version == "1"
    assert registry.version(CHALLENGER) is None  # a first model goes straight to champion: nothing to compare online
    assert _metadata(platform, "champion_model")["decision"] == "promoted"


def test_the_gate_judged_on_the_challengers_validation_rows_not_its_training_days(platform):
    model, gate = _metadata(platform, "candidate_model"), _metadata(platform, "champion_model")
    validation = model["validation_window"].split(", ")
    assert gate["evaluation_window"] == f"{model['validation_rows']} rows of {', '.join(validation)}"
    assert model["split"].startswith("time split: trained on ") and "labels look 30 days ahead" in model["split"]
    assert "Split: time split" in model["model_card"]
    assert "segment gap" in gate["reason"] and "not evaluated" not in gate["reason"]  # segments declared in dbt


def test_validation_auc_is_clearly_above_chance(platform):
    model = _metadata(platform, "candidate_model")
    # A shuffled label or a feature pipeline that leaks nothing useful sits near 0.5.
    assert model["validation_roc_auc"] >= 0.70, model["validation_roc_auc"]
    assert model["validation_lift_top_decile"] > 2.5
    for name in ("validation_pr_auc", "validation_log_loss", "validation_brier", "segment_gap"):
        assert np.isfinite(model[name])
    assert "## Performance by segment" in model["model_card"] and "Largest gap" in model["model_card"]
    assert model["feature_importance"].startswith("![plot](data:image/png;base64,")


def test_features_come_from_the_dbt_yaml(platform):
    declared = yaml.safe_load((dbt_project().project_dir / "models" / "marts" / "_marts.yml").read_text())
    features_model = next(m for m in declared["models"] if m["name"] == "customer_features")
    roles = {c["name"]: c.get("config", {}).get("meta", {}).get("role") for c in features_model["columns"]}
    expected = [name for name, role in roles.items() if role == "feature" or "feature" in (role or [])]
    assert _metadata(platform, "candidate_model")["features"] == expected
    assert {"plan", "region", "acquisition_channel"} <= set(expected)  # categoricals train too


def test_mlflow_holds_the_run_the_version_and_its_profile(platform):
    registry = platform["defs"].resources["registry"]
    client = registry.activate()
    version = registry.version(CHAMPION)
    run = client.get_run(version.run_id)
    assert run.data.metrics["validation_roc_auc"] == pytest.approx(
        _metadata(platform, "candidate_model")["validation_roc_auc"]
    )
    assert json.loads(run.data.tags["lake_versions"]).keys() >= {"raw_sessions", "raw_cancellations"}
    assert run.data.tags["features"].split(",") == _metadata(platform, "candidate_model")["features"]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"model_card.md", "reference_profile.json", "feature_importance.png"} <= artifacts
    profile = json.loads(Path(client.download_artifacts(run.info.run_id, "reference_profile.json")).read_text())
    assert set(profile["features"]) == set(run.data.tags["features"].split(","))
    assert profile["features"]["plan"]["kind"] == "categorical" and profile["score"]["kind"] == "numeric"
    # The reference is the rows the model was validated on (declared in dbt), not the latest days it scores.
    split = json.loads(run.data.tags["split"])
    assert profile["snapshot"] == f"{split['validation'][0]}..{split['validation'][-1]}"
    assert profile["reference"]["kind"] == run.data.tags["drift_reference"] == "validation"
    assert profile["reference"]["snapshots"] == split["validation"]
    assert run.data.tags["drift_reference_rows"] == profile["reference"]["description"]
    assert profile["reference"]["description"].startswith("the validation rows (the time split's validation days): ")
    # The bands training_set declares in dbt, recorded with the version.
    assert profile["bands"] == json.loads(run.data.tags["risk_bands"])
    assert (profile["bands"]["medium_from"], profile["bands"]["high_from"]) == (0.1, 0.3)
    assert "Drift reference: the validation rows" in version.description
    assert "Risk bands: declared in dbt: medium from 0.1, high from 0.3" in version.description
    assert sum(profile["features"]["sessions_30d"]["proportions"]) == pytest.approx(1.0)
    assert "Model card" in version.description
    assert "one per `customer_id` (Customer key) and snapshot day" in version.description
    assert "retention teams" not in version.description


def _day_predictions(platform) -> pl.DataFrame:
    return platform["defs"].resources["lake"].read_days(PREDICTIONS, LAST)


def _day_features(platform) -> pl.DataFrame:
    warehouse = platform["defs"].resources["warehouse"]
    return warehouse.query("select * from customer_features where snapshot_date = ? order by customer_id", [LAST])


def test_predictions_are_explained_and_carry_their_provenance(platform):
    predictions = _day_predictions(platform).sort("customer_id")
    features = _day_features(platform)
    assert predictions["customer_id"].to_list() == features["customer_id"].to_list()
    assert set(predictions["model_version"]) == {"1"}
    assert set(predictions["risk_band"]) <= {"low", "medium", "high"}
    provenance = json.loads(predictions["feature_versions"][0])
    assert provenance["relation"].endswith('"customer_features"') and provenance["lake_versions"]
    review = predictions.filter(pl.col("needs_review"))
    assert review["churn_probability"].is_between(0.25, 0.35, closed="left").all()
    metadata = _metadata(platform, "churn_predictions")
    assert metadata["flagged_for_review"] == review.height


def test_reasons_only_where_someone_acts_by_default(platform):
    predictions = _day_predictions(platform)
    explained = predictions.filter(pl.col("explained_because").is_not_null())
    # Medium risk from 0.1, high from 0.3; the review band 0.25..0.35 lies inside them.
    assert explained["churn_probability"].min() >= 0.1
    assert set(explained["explained_because"]) == {"high risk", "medium risk"}
    assert explained.height == (predictions["churn_probability"] >= 0.1).sum() < predictions.height
    assert explained["top_reasons"].list.len().unique().to_list() == [3]
    assert predictions.filter(pl.col("explained_because").is_null())["top_reasons"].null_count() == (
        predictions.height - explained.height
    )
    metadata = _metadata(platform, "churn_predictions")
    assert metadata["rows_with_reasons"] == explained.height
    assert "`reasons_for: actionable`" in metadata["reasons_for"] and "medium risk" in metadata["reasons_for"]
    assert metadata["band_rule"].startswith("declared in dbt: medium from 0.1, high from 0.3")


def test_shap_contributions_plus_expected_value_equal_the_raw_score(platform):
    registry = platform["defs"].resources["registry"]
    model = registry.load(registry.version(CHAMPION).version)
    features = _day_features(platform)
    predictions = _day_predictions(platform).sort("customer_id")
    contributions = model.contributions(features)
    raw = model.raw_scores(features)
    np.testing.assert_allclose(contributions.sum(axis=1), raw, atol=1e-9)
    stored = predictions["churn_probability"].to_numpy()
    np.testing.assert_allclose(contributions.sum(axis=1), np.log(stored / (1 - stored)), atol=1e-6)
    np.testing.assert_allclose(predictions["expected_value"].to_numpy(), contributions[:, -1])
    # Plain predict on every row: the probabilities are identical.
    np.testing.assert_array_equal(stored, model.booster.predict(model.matrix(features)))
    # The stored reasons are the largest contributions, with their sign, on the rows explained.
    explained = predictions["explained_because"].is_not_null().to_numpy()
    first = predictions.filter(explained)["top_reasons"].list.first().struct.field("contribution").to_numpy()
    np.testing.assert_allclose(np.abs(first), np.abs(contributions[explained, :-1]).max(axis=1))


def test_rescoring_a_day_replaces_it_and_reasons_for_all_explains_everyone(platform):
    lake = platform["defs"].resources["lake"]
    before, version = _day_predictions(platform), lake.version(PREDICTIONS)
    everyone = {"ops": {"churn_predictions": {"config": {"reasons_for": "all", "chunk_rows": 1000}}}}
    result = _materialize(platform, [predictions_asset(default())], partition_key=LAST.isoformat(), run_config=everyone)
    assert result.success
    after = _day_predictions(platform)
    assert after.height == after["customer_id"].n_unique() == before.height
    assert lake.version(PREDICTIONS) == version + 1  # several chunks, one commit
    assert set(after["explained_because"]) == {"all"} and after["top_reasons"].null_count() == 0
    assert _metadata(platform, "churn_predictions")["rows_with_reasons"] == after.height
    joined = before.join(after, on="customer_id", suffix="_all")
    assert (joined["churn_probability"] == joined["churn_probability_all"]).all()
    explained = joined.filter(pl.col("explained_because").is_not_null())
    assert explained["top_reasons"].to_list() == explained["top_reasons_all"].to_list()


def test_a_fresh_process_loading_the_champion_predicts_the_same(platform, tmp_path):
    registry = platform["defs"].resources["registry"]
    features = _day_features(platform)
    features.write_parquet(tmp_path / "features.parquet")
    script = f"""
import mlflow, numpy as np, pandas as pd

mlflow.set_tracking_uri({registry.tracking_uri!r})
model = mlflow.pyfunc.load_model("models:/{registry.model_name}@champion")
np.save({str(tmp_path / "scores.npy")!r}, np.asarray(model.predict(pd.read_parquet({str(tmp_path / "features.parquet")!r}))))
"""
    env = {"MLFLOW_DISABLE_TELEMETRY": "true", "PATH": str(Path(sys.executable).parent)}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    stored = _day_predictions(platform).sort("customer_id")["churn_probability"].to_numpy()
    np.testing.assert_allclose(np.load(tmp_path / "scores.npy"), stored, rtol=1e-12)


def test_the_gate_refuses_a_worse_model_promotes_a_better_one_and_rollback_restores(platform):
    registry = platform["defs"].resources["registry"]
    worse = {"num_leaves": 2, "max_rounds": 3, "learning_rate": 0.01, "min_data_in_leaf": 2000}
    refused = _materialize(
        platform, [*model_assets(default())], run_config={"ops": {"candidate_model": {"config": worse}}}
    )
    check = _checks(refused)[PROMOTION_CHECK]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
    assert check.description.startswith("refused: challenger v2 refused") and "failed ROC AUC" in check.description
    assert registry.version(CHAMPION).version == "1" and registry.version(CANDIDATE).version == "2"
    assert registry.version(CHALLENGER) is None  # a refused version never receives traffic
    tags = registry.activate().get_model_version(registry.model_name, "2").tags
    assert tags["promotion_decision"] == "refused" and "ROC AUC" in tags["promotion_reason"]
    assert live_challenger(registry.by_number("2"), registry.version(CHAMPION)) is None

    passed = _materialize(platform, [*model_assets(default())])  # the default rollout mode: online
    assert _checks(passed)[PROMOTION_CHECK].passed
    gate = _metadata(platform, "champion_model")
    assert gate["decision"] == "challenger" and gate["champion_version"] == "1"
    assert registry.version(CHALLENGER).version == "3" and registry.version(CHAMPION).version == "1"
    assert apply_action(registry, PROMOTE, "2", "a refused version").endswith(
        "no longer a live challenger: nothing to do"
    )
    apply_action(registry, PROMOTE, "3", "won online")  # what the rollout sensor's run does
    assert registry.version(CHAMPION).version == "3"
    v3 = registry.by_number("3")
    steps = [(h["step"], h["verdict"]) for h in ModelRegistry.history(v3)]
    assert steps == [("trained", "candidate"), ("gate", "passed"), ("rollout", "challenger"), ("promotion", "promoted")]
    assert v3.tags["promotion_decision"] == "passed"  # the gate's own verdict, never rewritten

    cli = subprocess.run(
        [str(Path(sys.executable).parent / "churn-platform"), "rollback"],
        env={**os.environ, "PLATFORM_HOME": str(platform["home"])},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert cli.returncode == 0, cli.stderr[-2000:]
    assert "from version 3 back to version 1" in cli.stdout
    assert registry.version(CHAMPION).version == "1"


def test_the_gate_refuses_a_window_the_champion_trained_on(platform):
    """A challenger validated on older days than the champion's: the champion learned those outcomes."""
    registry = platform["defs"].resources["registry"]
    champion = registry.version(CHAMPION).version
    result = _materialize(
        platform,
        [*model_assets(default())],
        run_config={"ops": {"candidate_model": {"config": {"validation_snapshots": 4}}}},
    )
    check = _checks(result)[PROMOTION_CHECK]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
    assert "not judged:" in check.description and f"overlap what champion v{champion} trained on" in check.description
    assert registry.version(CHAMPION).version == champion


def test_a_registry_error_fails_the_gate_and_never_promotes(platform, monkeypatch, tmp_path):
    """A real MLflow server on the world's registry, behind a proxy that fails the champion alias read with 503."""
    registry = platform["defs"].resources["registry"]
    champion, versions = registry.version(CHAMPION).version, _version_count(registry)
    port = _free_port()
    # One worker: mlflow's default four each import mlflow on two cores (ready in 36 s here against 18 s).
    command = [str(Path(sys.executable).parent / "mlflow"), "server", "--workers", "1"]
    command += ["--backend-store-uri", registry.tracking_uri]
    server = subprocess.Popen(
        [*command, "--default-artifact-root", registry.artifact_location, "--host", "127.0.0.1", "--port", str(port)],
        # No job runners: the test reads the registry only (they were 5 processes importing mlflow, 17 s of CPU).
        env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "mlflow.log", "w"),  # noqa: SIM115
    )
    try:
        upstream = f"http://127.0.0.1:{port}"
        _wait_until_up(upstream + "/health", server)
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        with flaky_registry(upstream, lambda path: "alias=champion" in path) as url:
            flaky = ModelRegistry(
                tracking_uri=url,
                artifact_location=registry.artifact_location,
                experiment=registry.experiment,
                model_name=registry.model_name,
            )
            result = dg.materialize(
                [model_assets(default())[1]],
                instance=platform["instance"],
                resources={**platform["defs"].resources, "registry": flaky},
                raise_on_error=False,
            )
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE)
    assert "RegistryUnavailable" in str(failure.event_specific_data.error)
    assert registry.version(CHAMPION).version == champion and _version_count(registry) == versions


def _version_count(registry) -> int:
    return len(registry.activate().search_model_versions(f"name = '{registry.model_name}'"))


def _wait_until_up(url: str, server: subprocess.Popen, seconds: float = 120) -> None:
    import time
    import urllib.request

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert server.poll() is None, "mlflow server exited"
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer in {seconds} s")
