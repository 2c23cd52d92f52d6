"""Retention campaigns on a real trained platform: holdout, assignment, review, export, measured impact."""

import contextlib
import io

import dagster as dg
import numpy as np
import polars as pl
import pytest

from platform_assets.campaign_log import CONTACT, HOLDOUT
from platform_assets.cli import main
from platform_assets.decisions.assignment import assign, plan_holdout
from platform_assets.definitions import build_definitions
from platform_assets.defs.datasets import default, spec_of
from platform_assets.defs.decisions.assets import decision_assets
from platform_assets.partitions import weekly_partitions
from platform_assets.tables import CAMPAIGN_LOG, PREDICTIONS, REVIEW_DECISIONS, REVIEW_QUEUE
from resources.settings import settings
from simulator.treatment import read_contacts
from simulator.world import simulate_windows
from tests.conftest import QUIET, build_features, day, ingest, memory_instance, module_home, range_tags

_DECISIONS = {a.key.to_user_string(): a for a in decision_assets(default())[0]}
business_dashboard, campaign_impact, retention_campaign, review_decisions, review_queue, review_report, uplift_model = (
    _DECISIONS[name]
    for name in (
        "business_dashboard",
        "campaign_impact",
        "retention_campaign",
        "review_decisions",
        "review_queue",
        "review_report",
        "uplift_model",
    )
)

pytestmark = pytest.mark.world

SIZE = {"PLATFORM_SIM_CUSTOMERS": "2000", "PLATFORM_SIM_DAYS": "150"}
CAMPAIGN_DAY, NEXT_DAY, TRIAL_DAY, MATURED_DAY = 149, 150, 151, 179
# Capacity past the day's candidates, so every eligible customer with a positive value is targeted.
CAMPAIGN = {"max_contacts": 5000, "daily_budget": 1e6, "planned_contacts": 300, "max_holdout_share": 0.4}


def run(assets, defs, instance, n: int, campaign: dict | None = None):
    config = {"ops": {"retention_campaign": {"config": campaign or CAMPAIGN}}, **QUIET}
    selected = {a.key for a in assets}
    config["ops"] = {k: v for k, v in config["ops"].items() if dg.AssetKey(k) in selected}
    return dg.materialize(
        assets, instance=instance, resources=defs.resources, partition_key=day(n).isoformat(), run_config=config
    )


def metadata(result, key: str) -> dict:
    event = next(e for e in result.get_asset_materialization_events() if e.asset_key == dg.AssetKey(key))
    return {k: v.value for k, v in event.event_specific_data.materialization.metadata.items()}


def checks(result) -> dict:
    return {
        e.event_specific_data.check_name: e.event_specific_data
        for e in result.all_events
        if e.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION
    }


def command_line(lake, cooling: set[int]) -> dict:
    """A reviewer at the terminal on day 150: lists the queue, approves one waiting customer, rejects a top one."""
    predictions = lake.read_days(PREDICTIONS, day(NEXT_DAY)).filter(~pl.col("customer_id").is_in(list(cooling)))
    waiting = predictions.filter(pl.col("needs_review")).sort("churn_probability", descending=True)
    top = predictions.filter(~pl.col("needs_review")).sort("churn_probability", descending=True)
    approve, reject = int(waiting["customer_id"][0]), int(top["customer_id"][0])
    out = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(out):
        patch.setenv("DAGSTER_HOME", str(settings().resolved_home / "dagster"))  # the CLI exports it; undo after
        main(["review", "list"])
        main(["review", "decide", str(approve), "approve", "--reviewer", "bo", "--note", "loyal, call her"])
        main(["review", "decide", str(reject), "reject", "--reviewer", "bo"])
    return {"approve": approve, "reject": reject, "output": out.getvalue()}


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    """150 days and a promoted model; review decisions land; campaigns on days 149 and 150; outcomes through 179."""
    with module_home(tmp_path_factory, "decisions", SIZE) as home:
        defs = build_definitions()
        lake = defs.resources["lake"]
        with memory_instance() as instance:
            ingest(defs, instance, day(0), day(CAMPAIGN_DAY))
            assert (
                defs.resolve_job_def("train_model")
                .execute_in_process(instance=instance, tags=range_tags(day(0), day(CAMPAIGN_DAY)), run_config=QUIET)
                .success
            )
            score = defs.resolve_job_def("score_day")
            assert score.execute_in_process(instance=instance, partition_key=day(CAMPAIGN_DAY).isoformat()).success
            band = (
                lake.read_days(PREDICTIONS, day(CAMPAIGN_DAY))
                .filter(pl.col("needs_review"))
                .sort("churn_probability", descending=True)["customer_id"]
                .to_list()
            )
            approved, rejected = band[:3], band[3:5]
            inbox = home / "review_inbox"
            inbox.mkdir(parents=True)
            pl.DataFrame(
                {
                    "customer_id": approved + rejected,
                    "decision": ["approve"] * 3 + ["REJECT"] * 2,
                    "reviewer": "ana",
                    "note": "checked the account",
                }
            ).write_csv(inbox / f"{day(CAMPAIGN_DAY)}.csv")
            before = run([campaign_impact], defs, instance, CAMPAIGN_DAY - 30)  # nothing ran yet
            first = run([review_decisions, review_queue, retention_campaign], defs, instance, CAMPAIGN_DAY)
            first_log = lake.read_days(CAMPAIGN_LOG, day(CAMPAIGN_DAY))
            exported = read_contacts(settings().contacts_path)
            again = run([retention_campaign], defs, instance, CAMPAIGN_DAY)
            early = run([campaign_impact], defs, instance, CAMPAIGN_DAY)
            ingest(defs, instance, day(NEXT_DAY), day(MATURED_DAY))
            assert build_features(defs, instance, day(NEXT_DAY), day(MATURED_DAY)).success
            assert score.execute_in_process(instance=instance, partition_key=day(NEXT_DAY).isoformat()).success
            run([review_queue], defs, instance, NEXT_DAY)
            cli = command_line(lake, set(first_log["customer_id"]))
            following = run([retention_campaign], defs, instance, NEXT_DAY)
            matured = run([campaign_impact], defs, instance, MATURED_DAY)
            uplift = dg.materialize([uplift_model], instance=instance, resources=defs.resources, run_config=QUIET)
            week = max(k for k in weekly_partitions().get_partition_keys() if k <= day(CAMPAIGN_DAY).isoformat())
            report = dg.materialize(
                [review_report], instance=instance, resources=defs.resources, partition_key=week, run_config=QUIET
            )
            dashboard = dg.materialize([business_dashboard], instance=instance, resources=defs.resources)
            # A trial of the newest uplift model: trained on the few matured outcomes there are, then targeted by.
            # Small leaves, so the booster can split on contact at all with these few outcomes; offers
            # free, so every customer the model expects contact to help has a positive expected value.
            trial = {"ops": {"uplift_model": {"config": {"min_outcomes_per_arm": 20, "min_data_in_leaf": 5}}}, **QUIET}
            trained = dg.materialize([uplift_model], instance=instance, resources=defs.resources, run_config=trial)
            assert score.execute_in_process(instance=instance, partition_key=day(TRIAL_DAY).isoformat()).success
            by_uplift = run(
                [retention_campaign],
                defs,
                instance,
                TRIAL_DAY,
                CAMPAIGN | {"targeting": "uplift", "uplift_alias": "challenger", "offer_cost": 0.0},
            )
            yield {
                "defs": defs,
                "lake": lake,
                "home": home,
                "approved": approved,
                "rejected": rejected,
                "band": band,
                "runs": {
                    "before": before,
                    "first": first,
                    "again": again,
                    "early": early,
                    "following": following,
                    "matured": matured,
                    "uplift": uplift,
                    "report": report,
                    "dashboard": dashboard,
                    "trained": trained,
                    "by_uplift": by_uplift,
                },
                "cli": cli,
                "first_log": first_log,
                "exported": exported,
            }


def test_holdout_customers_are_never_contacted(platform):
    log = platform["first_log"]
    holdout = log.filter(pl.col("arm") == HOLDOUT)
    assert holdout.height > 30 and log.filter(pl.col("arm") == CONTACT).height > 30
    assert not holdout["contacted"].any() and log.filter(pl.col("arm") == CONTACT)["contacted"].all()
    exported = platform["exported"]
    assert set(exported["customer_id"]) == set(log.filter(pl.col("contacted"))["customer_id"])
    assert not set(exported["customer_id"]) & set(holdout["customer_id"])
    csv = pl.read_csv(platform["home"] / "exports" / "contacts" / f"{day(CAMPAIGN_DAY)}.csv")
    assert set(csv["customer_id"]) == set(exported["customer_id"])
    assert {"churn_probability", "top_reasons", "model_version", "campaign", "offer_cost"} <= set(csv.columns)


def test_arms_are_the_audited_hash_and_a_rerun_reproduces_the_day(platform):
    log = platform["first_log"]
    share = log["holdout_share"][0]
    recomputed = assign(log["campaign"][0], 20261201, log["customer_id"].to_numpy(), share)
    assert (recomputed == log["arm"].to_numpy()).all()
    rerun = platform["lake"].read_days(CAMPAIGN_LOG, day(CAMPAIGN_DAY))
    assert (
        rerun.select("customer_id", "arm", "rank")
        .sort("customer_id")
        .equals(log.select("customer_id", "arm", "rank").sort("customer_id"))
    )


def test_every_logged_customer_carries_model_score_reasons_and_arm(platform):
    log = platform["first_log"]
    predictions = platform["lake"].read_days(PREDICTIONS, day(CAMPAIGN_DAY))
    joined = log.join(predictions, on="customer_id", suffix="_scored")
    assert joined.height == log.height
    assert (joined["churn_probability"] == joined["churn_probability_scored"]).all()
    assert (joined["model_version"] == joined["model_version_scored"]).all()
    assert log["top_reasons"].null_count() == 0 and log["top_reasons"].str.contains(r"\(").all()
    assert (log["expected_net_value"] > 0).all()
    assert log["rank"].sort().to_list() == list(range(1, log.height + 1))


def test_the_holdout_size_is_the_power_analysis_in_the_metadata(platform):
    meta = metadata(platform["runs"]["first"], "retention_campaign")
    plan = meta["power_analysis"]
    expected = plan_holdout(plan["base_rate"], 0.05, CAMPAIGN["planned_contacts"], 0.05, 0.8, (0.05, 0.4))
    assert plan == expected.as_dict()
    assert meta["holdout_share"] == plan["holdout_share"] == platform["first_log"]["holdout_share"][0]
    assert meta["contacted"] + meta["held_out"] == platform["first_log"].height
    assert (platform["first_log"]["planned_contacts"] == CAMPAIGN["planned_contacts"]).all()


def test_review_decisions_are_stored_and_honored(platform):
    lake = platform["lake"]
    stored = lake.read_days(REVIEW_DECISIONS, day(CAMPAIGN_DAY))
    assert stored.height == 5 and set(stored["decision"]) == {"approve", "reject"}
    assert set(stored["reviewer"]) == {"ana"} and stored["source"][0] == f"inbox:{day(CAMPAIGN_DAY)}.csv"
    assert stored["decided_at"].null_count() == 0
    log = platform["first_log"]
    targeted = set(log["customer_id"])
    assert set(platform["approved"]) <= targeted
    assert not set(platform["rejected"]) & targeted
    undecided = set(platform["band"]) - set(platform["approved"]) - set(platform["rejected"])
    assert undecided and not undecided & targeted
    queue = lake.read_days(REVIEW_QUEUE, day(CAMPAIGN_DAY))
    assert set(queue["customer_id"]) == undecided
    meta = metadata(platform["runs"]["first"], "retention_campaign")
    assert meta["awaiting_review"] == len(undecided) and meta["rejected_by_review"] == 2


def test_nobody_is_targeted_again_within_the_cooldown(platform):
    lake = platform["lake"]
    first = set(lake.read_days(CAMPAIGN_LOG, day(CAMPAIGN_DAY))["customer_id"])
    following = lake.read_days(CAMPAIGN_LOG, day(NEXT_DAY))
    assert following.height > 0 and not first & set(following["customer_id"])
    assert metadata(platform["runs"]["following"], "retention_campaign")["in_cooldown"] > 0


def test_the_simulated_world_reacts_to_exactly_the_exported_contacts(platform):
    truth: list[pl.DataFrame] = []
    source = platform["defs"].resources["source"].simulator
    list(simulate_windows(source, [(day(0), day(MATURED_DAY))], truth=truth))
    contacted = set(read_contacts(settings().contacts_path)["customer_id"])
    reacted = set(truth[0]["customer_id"])
    assert reacted <= contacted and len(reacted) >= 0.97 * len(contacted)  # less who cancelled on the day
    assert set(truth[0]["segment"]) >= {"persuadable", "sure_thing"}


def test_impact_says_when_outcomes_mature_instead_of_a_figure(platform):
    before = checks(platform["runs"]["before"])["campaign_effect"]
    assert not before.passed and before.description == "not evaluated: no campaign has run yet"
    early = platform["runs"]["early"]
    meta = metadata(early, "campaign_impact")
    assert "churn_contacted" not in meta and "net_saving_eur" not in meta
    horizon = f"the first campaign ({day(CAMPAIGN_DAY)}) matures on {day(CAMPAIGN_DAY + 30)}"
    assert horizon in meta["figures"]
    check = checks(early)["campaign_effect"]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN and horizon in check.description


def test_matured_impact_compares_the_arms_with_an_interval(platform):
    result = platform["runs"]["matured"]
    meta = metadata(result, "campaign_impact")
    log = platform["first_log"]
    assert meta["contacted_outcomes"] + meta["holdout_outcomes"] <= log.height
    assert meta["contacted_outcomes"] >= 0.95 * log.filter(pl.col("contacted")).height
    low, high = meta["absolute_reduction_95ci"]
    assert low <= meta["absolute_reduction"] <= high
    assert meta["pooled_absolute_reduction"] == pytest.approx(meta["churn_holdout"] - meta["churn_contacted"])
    # Only the first campaign day has matured, one campaign id: the stratified figures are the pooled ones.
    assert len(meta["strata"]) == 1 and meta["strata_left_out"] == "none" and meta["look"] == 1
    assert meta["absolute_reduction"] == pytest.approx(meta["pooled_absolute_reduction"])
    assert meta["net_saving_eur_low"] <= meta["net_saving_eur"] <= meta["net_saving_eur_high"]
    assert meta["offer_cost_eur"] == pytest.approx(15.0 * meta["contacted_outcomes"])
    assert np.isfinite(meta["npv_eur"]) and meta["reduction_over_time"].startswith("![plot](data:image/png")
    check = checks(result)["campaign_effect"]
    seen = {k: v.value for k, v in check.metadata.items()}
    assert seen["sequential_design"].startswith("Lan-DeMets O'Brien-Fleming-type alpha spending")
    assert seen["p_value"] == meta["p_value"] and seen["planned_contacts"] == CAMPAIGN["planned_contacts"]
    assert "look 1 (campaign day" in check.description and "pooled over campaigns" in check.description
    if seen["declared"] != "none":
        assert check.passed == seen["declared"].startswith("reduction") == (meta["absolute_reduction"] > 0)
        assert meta["p_value"] < seen["alpha_at_look"]
    elif seen["information_fraction"] < 1:
        assert check.passed and check.description.startswith("inconclusive so far")
    else:
        assert not check.passed and "at its planned size (300 contacts)" in check.description
    stored = platform["lake"].read_days("decisions/campaign_impact", day(MATURED_DAY))
    assert stored["difference"].to_list() == [pytest.approx(-meta["absolute_reduction"])]


def test_uplift_waits_for_enough_outcomes_and_says_why(platform):
    meta = metadata(platform["runs"]["uplift"], "uplift_model")
    assert meta["status"].startswith("not trained: ") and "per arm needed" in meta["status"]


def test_a_campaign_targets_by_the_registered_uplift_model(platform):
    """targeting: uplift chooses exactly the eligible customers whose served uplift x value - cost is positive.

    The set is computed here from the model MLflow serves, independently of the campaign. On
    this fixture's few outcomes the model may expect contact to help nobody; the campaign must
    then contact nobody, where targeting by risk would have chosen hundreds.
    """
    import mlflow

    trained = metadata(platform["runs"]["trained"], "uplift_model")
    assert trained["status"] == "trained", trained["status"]
    meta = metadata(platform["runs"]["by_uplift"], "retention_campaign")
    assert meta["policy"] == "uplift" and meta["uplift_model_version"] == trained["model_version"]
    log = platform["lake"].read_days(CAMPAIGN_LOG, day(TRIAL_DAY))
    assert (log["policy"] == "uplift").all() and (log["uplift_model_version"] == trained["model_version"]).all()

    defs, lake = platform["defs"], platform["lake"]
    spec = spec_of(default())
    features = defs.resources["warehouse"].query(
        f"select * from {spec.scoring_relation} where {spec.snapshot} = ?", [day(TRIAL_DAY)]
    )
    scored = lake.read_days(PREDICTIONS, day(TRIAL_DAY))
    frame = features.join(scored.select("customer_id", "churn_probability", "needs_review"), on="customer_id")
    defs.resources["registry"].activate()
    served = mlflow.pyfunc.load_model(f"models:/uplift_model/{trained['model_version']}").predict(frame.to_pandas())
    frame = frame.with_columns(served=pl.Series(np.asarray(served, dtype=float)))
    value = frame["served"] * frame["monthly_charge"].cast(pl.Float64) * 12.0  # offers are free in this trial
    cooling = set(lake.read_days(CAMPAIGN_LOG, day(CAMPAIGN_DAY), day(NEXT_DAY))["customer_id"])
    approved = set(platform["approved"]) | {platform["cli"]["approve"]}
    rejected = set(platform["rejected"]) | {platform["cli"]["reject"]}
    waiting = (set(frame.filter(pl.col("needs_review"))["customer_id"]) - approved) | rejected
    expected = set(frame.filter(value > 0)["customer_id"]) - cooling - waiting
    assert set(log["customer_id"]) == expected
    assert meta["candidates_with_positive_value"] == len(expected)
    assert log["predicted_uplift"].to_list() == pytest.approx(
        [dict(zip(frame["customer_id"], frame["served"], strict=True))[c] for c in log["customer_id"]]
    )
    assert log.sort("rank")["expected_net_value"].is_sorted(descending=True)
    eligible = set(frame["customer_id"]) - cooling - waiting
    assert len(eligible) > len(expected)  # risk targeting with free offers would have contacted them all


def test_the_review_command_lists_the_queue_and_its_decisions_are_honored(platform):
    cli, lake = platform["cli"], platform["lake"]
    queue = lake.read_days(REVIEW_QUEUE, day(NEXT_DAY))
    assert f"Review queue of {day(NEXT_DAY)}: {queue.height} waiting" in cli["output"]
    assert f"Recorded: approve customer {cli['approve']} by bo from {day(NEXT_DAY)}" in cli["output"]
    stored = lake.read_days(REVIEW_DECISIONS, day(NEXT_DAY))
    assert set(stored["source"]) == {"cli"} and set(stored["reviewer"]) == {"bo"}
    assert stored.filter(pl.col("customer_id") == cli["approve"])["note"].to_list() == ["loyal, call her"]
    targeted = set(lake.read_days(CAMPAIGN_LOG, day(NEXT_DAY))["customer_id"])
    assert cli["approve"] in targeted and cli["reject"] not in targeted


def test_review_report_counts_and_follows_reviewed_customers(platform):
    meta = metadata(platform["runs"]["report"], "review_report")
    assert meta["reviewed"] == 5 and meta["approved"] == 3 and meta["overridden"] == 2
    assert "| decision | arm | customers | churn_rate |" in meta["how_reviewed_customers_fared"]


def test_the_dashboard_plots_what_was_stored_and_names_what_is_missing(platform):
    meta = metadata(platform["runs"]["dashboard"], "business_dashboard")
    log = platform["lake"].scan(CAMPAIGN_LOG).collect()
    reach = log.filter(pl.col("ds") == log["ds"].max())["contacted"].sum()
    assert meta["latest_campaign_reach"] == reach
    for name in ("campaign_reach", "net_saving_eur", "review_decisions", "drifted_feature_share"):
        assert meta[f"{name}_over_time"].startswith("![plot](data:image/png;base64,")
    assert set(meta["missing_series"]) <= {"churn_rate", "roc_auc"}
