"""dbt through Dagster: features are built and tested, and never see the future."""

import os
from datetime import timedelta

import dagster as dg
import pytest
from polars.testing import assert_frame_equal

from platform_assets.definitions import build_definitions
from tests.conftest import SMALL, build_features, day, ingest, memory_instance, module_home

pytestmark = pytest.mark.world

FEATURES = "select * from customer_features where snapshot_date <= ? order by customer_id, snapshot_date"


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    """Build features on 70 days, then again once 30 more days have landed."""
    with module_home(tmp_path_factory, "dbt", SMALL) as home:
        defs = build_definitions()
        warehouse = defs.resources["warehouse"]
        with memory_instance() as instance:
            ingest(defs, instance, day(0), day(69))
            first = build_features(defs, instance, day(0), day(69))
            early = warehouse.query(FEATURES, [day(69)])
            ingest(defs, instance, day(70), day(99))
            second = build_features(defs, instance, day(70), day(99))
            late = warehouse.query(FEATURES, [day(69)])
            training = warehouse.table("training_set")
            yield {
                "first": first,
                "second": second,
                "early": early,
                "late": late,
                "training": training,
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
    }
    assert all(v >= 1 for v in versions.values())  # two writes each: the first and the second build


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
    assert snapshots.len() >= 2 and snapshots.max() <= day(99 - 30) and snapshots.min() >= day(56)
    assert (snapshots.diff().drop_nulls() == timedelta(days=7)).all()
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
