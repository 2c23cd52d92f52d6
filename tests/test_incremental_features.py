"""Features by snapshot day: day by day, a backfilled range in one run and a full rebuild agree exactly."""

import dagster as dg
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from platform_assets.definitions import build_definitions
from resources.settings import settings
from tests.conftest import QUIET, day, ingest, memory_instance, module_home, range_tags

pytestmark = pytest.mark.slow

WORLD = {"PLATFORM_SIM_CUSTOMERS": "600", "PLATFORM_SIM_DAYS": "100"}
BY_DAY = {"customer_features": "customer_id, snapshot_date"}
# Staging of the event tables, and the usage every day's windows read, are incremental by landing day.
BY_LANDING_DAY = {
    "int_customer_activity": "customer_id, activity_date, loaded_on",
    "stg_sessions": "session_id",
    "stg_support_tickets": "ticket_id",
    "stg_promotions": "offer_id",
    "stg_plan_changes": "all",
}
# The days a range to day 94 builds with PLATFORM_FEATURE_DAYS=used: its training snapshot days (every 7
# from the 56-day warm-up) and its last day.
USED_DAYS = [day(n) for n in (56, 63, 70, 77, 84, 91, 94)]
FULL_REFRESH = {**QUIET, "ops": {"dbt_models": {"config": {"full_refresh": True}}}}


def build(defs, instance, partition_key=None, tags=None, run_config=QUIET):
    from platform_assets.defs.features.assets import materialize_features

    result = materialize_features(
        defs.resources, instance, partition_key=partition_key, tags=tags, run_config=run_config
    )
    assert result.success
    return result


def tables(warehouse) -> dict:
    models = {**BY_DAY, **BY_LANDING_DAY}
    return {name: warehouse.query(f"select * from {name} order by {keys}") for name, keys in models.items()}


def features_of(warehouse, condition: str, days: list):
    return warehouse.query(
        f"select * from customer_features where {condition} order by {BY_DAY['customer_features']}", days
    )


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    """Day 93 alone into a new warehouse (staging catches up on the days before it); history
    to day 94 in one run with PLATFORM_FEATURE_DAYS=used (day 93, built before, is emptied);
    days 95 and 96 one by one as they land; 97..99 as one backfilled run; day 96 again; then
    a full rebuild of every day. The used-days run is the history's run, not one more build:
    a build of this world took 14 to 21 s here (2026-12-07), customer_features under 1 s of it."""
    with module_home(tmp_path_factory, "incremental", WORLD):
        defs = build_definitions()
        warehouse = defs.resources["warehouse"]
        with memory_instance() as instance:
            ingest(defs, instance, day(0), day(94))
            first = build(defs, instance, partition_key=day(93).isoformat())
            caught_up = features_of(warehouse, "snapshot_date = ?", [day(93)])
            with pytest.MonkeyPatch.context() as patch:
                patch.setenv("PLATFORM_FEATURE_DAYS", "used")
                used_run = build(defs, instance, tags=range_tags(day(0), day(94)))
            used = features_of(warehouse, "snapshot_date <= ?", [day(94)])
            for n in (95, 96):
                ingest(defs, instance, day(n), day(n))
                build(defs, instance, partition_key=day(n).isoformat())
            ingest(defs, instance, day(97), day(99))
            backfill = build(defs, instance, tags=range_tags(day(97), day(99)))
            build(defs, instance, partition_key=day(96).isoformat())
            incremental = tables(warehouse)
            build(defs, instance, partition_key=day(99).isoformat(), run_config=FULL_REFRESH)
            full = tables(warehouse)
            logs = sorted(settings().dbt_target_path.glob("*/dbt.log"), key=lambda log: log.stat().st_mtime)
            yield {
                "dbt_logs": [log.read_text() for log in logs],
                "incremental": incremental,
                "full": full,
                "backfill": backfill,
                "first": first,
                "caught_up": caught_up,
                "used": used,
                "used_run": used_run,
            }


@pytest.mark.parametrize("name", [*BY_DAY, *BY_LANDING_DAY])
def test_incremental_days_equal_the_full_rebuild_exactly(builds, name):
    incremental, full = builds["incremental"][name], builds["full"][name]
    assert full.height > 0
    if name in BY_DAY:
        assert full["snapshot_date"].max() == day(99)
        # The history to day 94 was built with used days only (test_a_range_built_with_used_days_...).
        built = incremental["snapshot_date"].unique().sort().to_list()
        assert built == USED_DAYS + [day(n) for n in range(95, 100)]
        full = full.filter(pl.col("snapshot_date").is_in(built))
    assert_frame_equal(incremental, full, check_exact=True)


def test_a_day_built_before_the_days_before_it_stages_them_first(builds):
    """Staging holds landed days only once a run added them; the features of a day must not read a hole."""
    assert builds["caught_up"].height > 300
    full = builds["full"]["customer_features"]
    assert_frame_equal(builds["caught_up"], full.filter(pl.col("snapshot_date") == day(93)), check_exact=True)
    metadata = builds["first"].get_asset_materialization_events()[0].event_specific_data.materialization.metadata
    assert metadata["landing_days_caught_up"].value == f"{day(0)}..{day(93)}"


def test_a_backfilled_range_is_one_run_that_materializes_each_day(builds):
    events = builds["backfill"].get_asset_materialization_events()
    days = {e.partition for e in events if e.asset_key == dg.AssetKey("customer_features")}
    assert days == {day(n).isoformat() for n in (97, 98, 99)}


def test_a_re_run_day_is_replaced_not_duplicated(builds):
    features = builds["incremental"]["customer_features"]
    assert features.select("customer_id", "snapshot_date").is_duplicated().sum() == 0
    assert features.filter(features["snapshot_date"] == day(96)).height > 300


def test_a_range_built_with_used_days_holds_its_training_days_and_last_day_as_every_day_has_them(builds):
    """PLATFORM_FEATURE_DAYS=used: the training snapshot days (every 7 from the 56-day warm-up) and the day
    scored; the range's other days are emptied (day 93, built before), and the days built are exactly those
    of the full build."""
    used, full = builds["used"], builds["full"]["customer_features"]
    assert used["snapshot_date"].unique().sort().to_list() == USED_DAYS
    assert_frame_equal(used, full.filter(pl.col("snapshot_date").is_in(USED_DAYS)), check_exact=True)
    event = next(
        e for e in builds["used_run"].get_asset_materialization_events() if e.asset_key.path == ["customer_features"]
    )
    assert event.event_specific_data.materialization.metadata["feature_days"].value == "used"


def test_each_build_after_a_homes_first_reuses_its_dbt_parse(builds):
    """The days go to dbt in its environment, read only when the models run: a new day changes
    nothing dbt parses, so it starts from the home's last parse (a whole parse costs about 4 s)."""
    logs = builds["dbt_logs"]
    assert len(logs) == 7  # day 93, days 0..94 (used days), 95, 96, 97..99, 96 again, the full rebuild
    whole = [n for n, log in enumerate(logs) if "Unable to do partial parsing" in log]
    assert whole == [0], whole  # the first: the project's parse was made for another home's warehouse
    assert all("Partial parsing enabled" in log for log in logs[1:])


def test_daily_runs_leave_the_training_set_to_training():
    defs = build_definitions()
    daily = defs.resolve_job_def("daily_pipeline").asset_layer.executable_asset_keys
    assert dg.AssetKey("customer_features") in daily
    assert dg.AssetKey("training_set") not in daily
    retrain = defs.resolve_job_def("retrain_model").asset_layer.executable_asset_keys
    assert dg.AssetKey("training_set") in retrain
