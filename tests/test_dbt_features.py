"""dbt through Dagster: features are built and tested, and never see the future."""

import json
import os
import shutil

import dagster as dg
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from platform_assets.definitions import build_definitions
from platform_assets.tables import CAMPAIGN_LOG
from tests.conftest import CHECKOUT, SMALL, build_features, day, ingest, memory_instance, module_home

pytestmark = pytest.mark.world

FEATURES = "select * from customer_features where snapshot_date <= ? order by customer_id, snapshot_date"
# Campaign days of the customers a campaign targeted, by group, and the training snapshots
# (56 and 63: every 7 days from the 56-day warm-up, the label horizon 30 days) at which a
# contact acts within the label horizon: a contact acts from the day after the campaign day
# for 30 days (contact_effect_days).
TARGETED = {
    "contacted_63": (63, True, {56, 63}),  # acts from 64, inside (63, 93]
    "contacted_34": (34, True, {56, 63}),  # acts 35..64: its last day is inside (63, 93]
    "contacted_33": (33, True, {56}),  # acts 34..63: over before 63's horizon starts
    "contacted_93": (93, True, set()),  # acts from 94, past 63's horizon (63, 93]
    "holdout_63": (63, False, set()),  # the holdout arm, never contacted
}


def log_campaigns(lake, active: list[int]) -> dict[str, list[int]]:
    """Write a campaign log targeting ten of ``active`` per group of TARGETED, as retention_campaign logs them."""
    groups = {name: active[10 * i : 10 * (i + 1)] for i, name in enumerate(TARGETED)}
    rows = pl.DataFrame(
        [
            {"customer_id": c, "campaign": "retention-test", "arm": "contact" if hit else "holdout", "contacted": hit}
            | {"ds": day(d)}
            for name, (d, hit, _) in TARGETED.items()
            for c in groups[name]
        ]
    )
    log = rows.with_columns(pl.lit(None).alias(c) for c in CAMPAIGN_LOG.schema if c not in rows.columns)
    log = log.select([pl.col(c).cast(t) for c, t in CAMPAIGN_LOG.schema.items()])
    for (ds,), part in log.group_by("ds"):
        lake.replace_days(CAMPAIGN_LOG, part, ds, ds)
    return groups


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    """Build features on 70 days with no campaign log yet; a campaign log is written; build again once
    30 more days have landed."""
    with module_home(tmp_path_factory, "dbt", SMALL) as home:
        defs = build_definitions()
        warehouse = defs.resources["warehouse"]
        with memory_instance() as instance:
            ingest(defs, instance, day(0), day(69))
            first = build_features(defs, instance, day(0), day(69))
            early = warehouse.query(FEATURES, [day(69)])
            treated_before = warehouse.query("select count(*) as n from churn_outcomes where treated_within_horizon")
            both = early.filter(pl.col("snapshot_date").is_in([day(56), day(63)])).group_by("customer_id").len()
            active = sorted(both.filter(pl.col("len") == 2)["customer_id"].to_list())
            groups = log_campaigns(defs.resources["lake"], active)
            ingest(defs, instance, day(70), day(99))
            second = build_features(defs, instance, day(70), day(99))
            late = warehouse.query(FEATURES, [day(69)])
            training = warehouse.table("training_set")
            outcomes = warehouse.query(
                "select customer_id, snapshot_date, treated_within_horizon from churn_outcomes "
                "where snapshot_date in (?, ?)",
                [day(56), day(63)],
            )
            yield {
                "first": first,
                "second": second,
                "early": early,
                "late": late,
                "training": training,
                "outcomes": outcomes,
                "treated_before": treated_before["n"].item(),
                "groups": groups,
                "instance": instance,
                "home": home,
                "env": dict(os.environ),
            }


def test_dbt_build_runs_through_dagster_and_its_tests_pass(builds):
    result = builds["second"]
    assert result.success
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert {"stg_sessions", "customer_features", "training_set"} <= materialized
    evaluations = [
        e.event_specific_data for e in result.all_events if e.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION
    ]
    dbt_checks = {c.check_name: c.passed for c in evaluations if not c.asset_key.to_user_string().startswith("raw_")}
    assert dbt_checks["features_use_no_future_data"] is True
    assert len(dbt_checks) >= 40 and all(dbt_checks.values())


def test_features_never_change_when_later_data_arrives(builds):
    early, late = builds["early"], builds["late"]
    assert early.height > 50_000
    # Exact for keys, counts and days; floats only up to summation order inside DuckDB.
    assert_frame_equal(early, late, check_exact=False, rel_tol=1e-9, abs_tol=1e-9)


def test_features_are_recorded_with_the_lake_versions_they_were_built_from(builds):
    event = builds["instance"].get_latest_materialization_event(dg.AssetKey("customer_features"))
    versions = event.asset_materialization.metadata["lake_versions"].value
    assert set(versions) == {
        "raw_customers",
        "raw_sessions",
        "raw_support_tickets",
        "raw_promotions",
        "raw_plan_changes",
        "raw_cancellations",
        "campaign_log",
    }
    raw = {k: v for k, v in versions.items() if k != "campaign_log"}
    assert all(v >= 1 for v in raw.values())  # two writes each: the first and the second build
    assert versions["campaign_log"] == 3  # created by the first of its four campaign days, one write each
    first = next(
        e.materialization
        for e in builds["first"].get_asset_materialization_events()
        if e.asset_key == dg.AssetKey("customer_features")
    )
    assert first.metadata["lake_versions"].value["campaign_log"] is None  # no campaign had run


def test_models_are_recorded_with_the_columns_the_warehouse_holds(builds):
    """The schema is the built table's, types included; row counts only on whole builds."""
    warehouse_types = dict(builds["late"].schema.items())  # polars' view of the same table, for the names
    instance = builds["instance"]
    features = instance.get_latest_materialization_event(dg.AssetKey("customer_features")).asset_materialization
    columns = {c.name: c.type for c in features.metadata["dagster/column_schema"].value.columns}
    assert list(columns) == list(warehouse_types)
    assert columns["customer_id"] in {"BIGINT", "INTEGER"} and columns["snapshot_date"] == "DATE"
    assert "dagster/row_count" not in features.metadata  # a day's partition: the table's count would mislead
    training = instance.get_latest_materialization_event(dg.AssetKey("training_set")).asset_materialization
    assert training.metadata["dagster/row_count"].value == builds["training"].height > 0


def test_training_set_has_matured_labels_on_spread_snapshots(builds):
    training = builds["training"]
    snapshots = training["snapshot_date"].unique().sort()
    # Every 7 days from the end of the 56-day warm-up, matured by day 99 - 30: the same days as history grows.
    assert snapshots.to_list() == [day(56), day(63)]
    rate = training["churned_within_horizon"].mean()
    assert 0.01 < rate < 0.2


def test_dbt_docs_generate_works_on_the_project(builds, tmp_path):
    import json

    from resources.dbt import dbt_resource

    invocation = dbt_resource().cli(["docs", "generate"], target_path=tmp_path / "docs").wait()
    assert invocation.is_successful()
    catalog = json.loads((tmp_path / "docs" / "catalog.json").read_text())
    columns = catalog["nodes"]["model.churn_platform.customer_features"]["columns"]
    assert {"customer_id", "snapshot_date", "sessions_30d"} <= {c.lower() for c in columns}
    assert (tmp_path / "docs" / "index.html").exists()


def test_dbt_run_by_hand_with_the_two_documented_days_stages_those_landing_days(builds, tmp_path):
    """docs/data.md names PLATFORM_BUILD_FIRST_DAY and PLATFORM_BUILD_LAST_DAY; the landing days default to them."""
    from resources.dbt import dbt_resource

    days = {"PLATFORM_BUILD_FIRST_DAY": "2026-01-02", "PLATFORM_BUILD_LAST_DAY": "2026-01-03"}
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("PLATFORM_BUILD_FIRST_LANDED_DAY", raising=False)
        invocation = (
            dbt_resource()
            .cli(["compile", "--select", "stg_sessions"], environment=days, target_path=tmp_path / "compiled")
            .wait()
        )
    assert invocation.is_successful()
    [compiled] = (tmp_path / "compiled" / "compiled").rglob("stg_sessions.sql")
    assert "ds between date '2026-01-02' and date '2026-01-03'" in " ".join(compiled.read_text().split())


def test_treated_labels_are_flagged_in_outcomes_and_left_out_of_training(builds):
    """A customer-day is treated when a contact acts within its label horizon; the holdout never is. Before
    any campaign (the first build) the log is an empty relation and nothing is treated."""
    assert builds["first"].success and builds["treated_before"] == 0
    groups, outcomes, training = builds["groups"], builds["outcomes"], builds["training"]
    expected = {(c, day(s)) for name, (_, _, snapshots) in TARGETED.items() for c in groups[name] for s in snapshots}
    flagged = set(outcomes.filter(pl.col("treated_within_horizon")).select("customer_id", "snapshot_date").rows())
    assert flagged == expected and len(expected) == 20 + 20 + 10
    # The flagged rows stay in churn_outcomes (campaign_impact compares both arms on them) ...
    targeted = {c for ids in groups.values() for c in ids}
    kept = outcomes.filter(pl.col("customer_id").is_in(list(targeted)))
    assert kept.height == 2 * len(targeted)
    # ... and are left out of training_set, which keeps every untreated customer-day, the holdout's included.
    trained = set(
        training.filter(pl.col("snapshot_date").is_in([day(56), day(63)])).select("customer_id", "snapshot_date").rows()
    )
    assert not trained & expected
    assert {(c, day(s)) for c in groups["holdout_63"] for s in (56, 63)} <= trained
    assert {(c, day(63)) for c in groups["contacted_33"] + groups["contacted_93"]} <= trained
    assert trained == set(outcomes.select("customer_id", "snapshot_date").rows()) - expected


@pytest.fixture
def project_copy(tmp_path, home, monkeypatch):
    """A copy of the dbt project with its manifest (times kept), the platform pointed at it."""
    from resources.dbt import dbt_project

    copy = tmp_path / "dbt_project"
    shutil.copytree(CHECKOUT / "dbt_project", copy, ignore=shutil.ignore_patterns("logs", "run", "compiled"))
    monkeypatch.setenv("PLATFORM_DBT_PROJECT_DIR", str(copy))
    dbt_project.cache_clear()
    yield copy
    dbt_project.cache_clear()


def test_in_development_the_project_is_parsed_again_only_when_a_file_it_is_parsed_from_changed(project_copy):
    """`dg` and `dagster dev` (DAGSTER_IS_DEV_CLI) load the definitions in every process, which then call
    prepare_if_changed: an unchanged project is not parsed again (dagster-dbt's prepare_if_dev parsed it each
    time), a new model is."""
    from resources.dbt import prepare_if_changed

    manifest = project_copy / "target" / "manifest.json"
    parsed = manifest.stat().st_mtime_ns
    prepare_if_changed()
    assert manifest.stat().st_mtime_ns == parsed
    (project_copy / "models" / "marts" / "probe.sql").write_text("select 1 as one\n")
    prepare_if_changed()
    assert "model.churn_platform.probe" in json.loads(manifest.read_text())["nodes"]
