"""Monitoring assets on a real trained platform: drift, matured performance, business impact."""

import re
from datetime import timedelta

import dagster as dg
import polars as pl
import pytest

from platform_assets.definitions import build_definitions
from platform_assets.defs.datasets import default, spec_of
from platform_assets.defs.decisions.assets import decision_assets
from platform_assets.defs.features.assets import whole_history_models
from platform_assets.defs.monitoring.performance import performance_assets
from platform_assets.defs.predictions.assets import predictions_asset
from platform_assets.ml.training import TimeSplit
from platform_assets.monitoring.outcomes import matured
from platform_assets.tables import BUSINESS_IMPACT, CAMPAIGN_LOG, FEATURE_DRIFT, MODEL_PERFORMANCE, PREDICTION_DRIFT
from resources.model_registry import CHAMPION
from tests.conftest import QUIET, day, ingest, memory_instance, module_home, range_tags

pytestmark = pytest.mark.world

SIZE = {"PLATFORM_SIM_CUSTOMERS": "3000", "PLATFORM_SIM_DAYS": "150"}
# A small campaign on day 119: the highest-value customers, contacted or held out.
CAMPAIGN = {"ops": {"retention_campaign": {"config": {"max_contacts": 60}}}, **QUIET}


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    """150 days, a promoted model, day 119 scored and monitored, a retention campaign on day 119 (the outcome
    model rebuilt after it), day 149 scored and monitored, then day 150 end to end."""
    with module_home(tmp_path_factory, "monitoring", SIZE):
        defs = build_definitions()
        with memory_instance() as instance:
            ingest(defs, instance, day(0), day(149))
            train = defs.resolve_job_def("train_model")
            assert train.execute_in_process(
                instance=instance, tags=range_tags(day(0), day(149)), run_config=QUIET
            ).success
            score = defs.resolve_job_def("score_day")
            runs = {
                119: score.execute_in_process(instance=instance, partition_key=day(119).isoformat(), run_config=QUIET)
            }
            # Two more scored days, judged a horizon later: one within the horizon of the last training snapshot,
            # one past it that is not a validation day (both before the campaign, so no row is treated).
            registry = defs.resources["registry"].named(default().registered_model)
            split = TimeSplit.from_json(registry.split(registry.by_number("1").run_id))
            last = max(split.train)
            horizon = timedelta(days=split.horizon_days)
            judged = {"within": last + timedelta(days=5), "later": last + horizon + timedelta(days=1)}
            for name, scored in judged.items():
                assert dg.materialize(
                    [predictions_asset(default())],
                    instance=instance,
                    resources=defs.resources,
                    partition_key=scored.isoformat(),
                    run_config=QUIET,
                ).success
                runs[name] = dg.materialize(
                    [performance_assets(default())[0]],
                    instance=instance,
                    resources=defs.resources,
                    partition_key=(scored + horizon).isoformat(),
                    run_config=QUIET,
                )
            runs["campaign"] = dg.materialize(
                [next(a for a in decision_assets(default())[0] if a.key.to_user_string() == "retention_campaign")],
                instance=instance,
                resources=defs.resources,
                partition_key=day(119).isoformat(),
                run_config=CAMPAIGN,
            )
            runs["outcomes"] = dg.materialize([whole_history_models()], instance=instance, resources=defs.resources)
            runs[149] = score.execute_in_process(
                instance=instance, partition_key=day(149).isoformat(), run_config=QUIET
            )
            runs[150] = defs.resolve_job_def("daily_pipeline").execute_in_process(
                instance=instance, partition_key=day(150).isoformat(), run_config=QUIET, raise_on_error=False
            )
            yield {
                "defs": defs,
                "instance": instance,
                "runs": runs,
                "log": defs.resources["lake"].read_days(CAMPAIGN_LOG, day(119)),
                "split": split,
                "judged": judged,
            }


def checks(result) -> dict:
    return {
        e.event_specific_data.check_name: e.event_specific_data
        for e in result.all_events
        if e.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION
    }


def metadata(result, key: str) -> dict:
    event = next(e for e in result.get_asset_materialization_events() if e.asset_key == dg.AssetKey(key))
    return {k: v.value for k, v in event.event_specific_data.materialization.metadata.items()}


def test_feature_drift_is_reported_per_feature_against_the_model_reference(platform):
    result = platform["runs"][149]
    assert result.success
    rows = platform["defs"].resources["lake"].read_days(FEATURE_DRIFT, day(149))
    features = metadata(result, "feature_drift_report")
    assert rows.height == features["dagster/row_count"] == 22
    assert set(rows["model_version"]) == {"1"} and set(rows["level"]) <= {"ok", "warn", "error"}
    assert rows["psi"].max() < 0.1  # 30 days after the validation rows it is compared with
    assert "| feature | level | psi |" in features["drift"]
    assert features["psi_history"].startswith("![plot](data:image/png;base64,")
    check = checks(result)["feature_drift"]
    assert check.passed and check.metadata["partition"].value == day(149).isoformat()
    assert checks(result)["prediction_drift"].passed
    assert platform["defs"].resources["lake"].read_days(PREDICTION_DRIFT, day(149)).height == 1


def test_the_validation_day_is_not_failed_against_a_reference_of_later_days(platform):
    """Day 119 validated the model. Its reference was the latest two weeks (days 136..149), after it, and it
    failed at ERROR; now the reference is the rows the model was validated on (training_set declares
    drift_reference: validation), so day 119 is part of it and says so, and later days are compared with it."""
    registry = platform["defs"].resources["registry"]
    version = registry.version(CHAMPION)
    split = TimeSplit.from_json(registry.split(version.run_id))
    assert day(119) in split.validation
    profile = registry.reference_profile(version.run_id)
    assert profile["reference"]["kind"] == registry.activate().get_run(version.run_id).data.tags["drift_reference"]
    assert profile["reference"]["kind"] == "validation"
    assert profile["reference"]["snapshots"] == [str(d) for d in split.validation]
    for name in ("feature_drift", "prediction_drift"):
        check = checks(platform["runs"][119])[name]
        assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
        assert check.description.startswith(
            "this day is part of the reference (validation rows): not a drift comparison"
        )
    assert metadata(platform["runs"][149], "feature_drift_report")["comparison"] == "against the reference"


def test_matured_predictions_are_scored_against_the_model_card(platform):
    result = platform["runs"][149]
    performance = metadata(result, "model_performance")
    assert performance["evaluated_predictions_of"] == day(119).isoformat()
    assert performance["roc_auc"] > 0.65
    assert performance["validation_roc_auc"] > 0.65
    decay = checks(result)["performance_decay"]
    assert decay.passed and "matured predictions of" in decay.description
    assert "fairness" in checks(result)
    row = platform["defs"].resources["lake"].read_days(MODEL_PERFORMANCE, day(149))
    assert row["scored_on"].to_list() == [day(119)]
    # Day 119 had nothing to evaluate yet: the checks warn and say why, never pass on nothing.
    for name in ("performance_decay", "fairness"):
        early = checks(platform["runs"][119])[name]
        assert not early.passed and early.severity == dg.AssetCheckSeverity.WARN
        assert early.description == (
            f"not evaluated: no predictions at or before {day(89)} (30 days, the label horizon, before {day(119)})"
        )
    assert performance["evaluated_rows"] == (
        f"v1's validation rows (snapshot {day(119)} validated it): this is its validation set again"
    )
    assert decay.description.endswith(f"rows: {performance['evaluated_rows']}")


def test_a_later_day_is_judged_and_one_within_the_horizon_of_training_is_left_out_saying_why(platform):
    """Not only the validation days: a snapshot a horizon past the last training snapshot is judged as unseen;
    one within the horizon of it shares outcomes with its labels, and the message says that, not 'trained on'."""
    split, judged = platform["split"], platform["judged"]
    last = max(split.train)
    assert judged["later"] not in split.validation and judged["later"] < min(split.validation)

    later = metadata(platform["runs"]["later"], "model_performance")
    assert platform["runs"]["later"].success
    assert later["evaluated_predictions_of"] == judged["later"].isoformat()
    assert later["left_out"] == "none" and later["dagster/row_count"] > 500
    assert later["evaluated_rows"] == (
        f"unseen by v1: snapshot {judged['later']} is 31 days after its last training snapshot {last} "
        "(at least the 30-day horizon), not one of its validation days"
    )
    assert later["roc_auc"] > 0.65
    assert checks(platform["runs"]["later"])["performance_decay"].passed

    within = metadata(platform["runs"]["within"], "model_performance")
    assert within["evaluated_predictions_of"] == judged["within"].isoformat()
    status = (
        r"not evaluated: (\d+) of \1 matured rows left out: their snapshot {} is within 30 days of v1's last "
        r"training snapshot {} \(5 days after it\), so their labels overlap what it learned \(unseen from {}\)"
    ).format(judged["within"], last, last + timedelta(days=30))
    assert re.fullmatch(status, within["status"]), within["status"]
    assert int(re.fullmatch(status, within["status"]).group(1)) > 500
    decay = checks(platform["runs"]["within"])["performance_decay"]
    assert not decay.passed and decay.description == within["status"]


def test_a_day_whose_exact_horizon_ago_was_not_scored_judges_the_latest_scored_before_it(platform):
    """Day 150: day 120 was not scored, day 119 was: its outcome has matured too, so it is judged."""
    assert platform["runs"][150].success
    for key in ("model_performance", "business_impact"):
        assert metadata(platform["runs"][150], key)["evaluated_predictions_of"] == day(119).isoformat()
    assert isinstance(metadata(platform["runs"][150], "business_impact")["lift_top_decile"], float)


def test_business_impact_uses_the_cost_matrix(platform):
    impact = metadata(platform["runs"][149], "business_impact")
    assert impact["cost_matrix"] == {"offer_cost": 15.0, "customer_value": 400.0, "offer_effect": 0.3}
    assert impact["lift_top_decile"] > 1.5
    assert impact["realized_saving_eur"] > impact["random_targeting_saving_eur"]
    row = platform["defs"].resources["lake"].read_days(BUSINESS_IMPACT, day(149))
    assert row["expected_saving"].to_list() == [pytest.approx(impact["expected_saving_eur"])]


def test_a_new_day_runs_end_to_end_and_monitoring_reruns_replace(platform):
    assert platform["runs"][150].success
    lake = platform["defs"].resources["lake"]
    assert lake.read_days(FEATURE_DRIFT, day(150)).height == 22
    before = lake.scan(FEATURE_DRIFT).select(pl.len()).collect().item()
    again = (
        platform["defs"]
        .resolve_job_def("score_day")
        .execute_in_process(instance=platform["instance"], partition_key=day(150).isoformat(), run_config=QUIET)
    )
    assert again.success
    assert lake.scan(FEATURE_DRIFT).select(pl.len()).collect().item() == before


def test_customers_a_campaign_contacted_are_not_judged_and_the_count_is_reported(platform):
    """The day-119 campaign's contacts act within the horizon of the predictions of 119: their outcomes are the
    campaign's as much as the model's, so model_performance leaves them out and says so; the holdout is judged."""
    assert platform["runs"]["campaign"].success and platform["runs"]["outcomes"].success
    log = platform["log"]
    contacted = set(log.filter(pl.col("contacted"))["customer_id"])
    holdout = set(log.filter(~pl.col("contacted"))["customer_id"])
    assert len(contacted) == 60 and holdout
    performance = metadata(platform["runs"][149], "model_performance")
    assert performance["treated_left_out"] == len(contacted)
    assert "treated_labels: exclude" in performance["treated_rows"]
    assert f"{len(contacted)} of " in performance["left_out"] and "treated" in performance["left_out"]
    business = metadata(platform["runs"][149], "business_impact")
    assert business["treated_left_out"] == len(contacted)

    defs = platform["defs"]
    registry = defs.resources["registry"].named(default().registered_model)
    judged = matured(
        defs.resources["lake"], defs.resources["warehouse"], registry, default(), spec_of(default()), day(149)
    )
    assert judged.scored_on == day(119) and judged.treated_left_out == len(contacted)
    customers = set(judged.rows["customer_id"])
    assert not customers & contacted and holdout <= customers
    assert performance["dagster/row_count"] == judged.rows.height

    # The same customer-days are out of the training labels; the holdout's are in.
    training = defs.resources["warehouse"].query(
        "select customer_id from training_set where snapshot_date = ?", [day(119)]
    )
    assert not set(training["customer_id"]) & contacted and holdout <= set(training["customer_id"])
