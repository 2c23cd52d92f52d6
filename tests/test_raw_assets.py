"""Raw assets: real Delta partitions, idempotent re-runs, single-run backfills, landed files."""

import dagster as dg
import polars as pl
import pytest

from platform_assets.contracts import CONTRACTS
from platform_assets.definitions import build_definitions
from platform_assets.defs.raw.assets import raw_ingest, raw_key
from platform_assets.tables import QUARANTINE, raw_table
from simulator.world import simulate
from tests.conftest import day, range_tags


def materialize(resources, instance, partition_key, selection=None, raise_on_error=True):
    return dg.materialize(
        [raw_ingest()],
        partition_key=partition_key,
        resources=resources,
        instance=instance,
        selection=selection,
        raise_on_error=raise_on_error,
    )


def checks(result):
    return {
        e.event_specific_data.asset_key.path[-1]: e.event_specific_data
        for e in result.all_events
        if e.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION
    }


def test_a_day_lands_in_delta_with_metadata_and_passing_contracts(resources, instance):
    result = materialize(resources, instance, day(5).isoformat())
    lake = resources["lake"]
    for table in CONTRACTS:
        stored = lake.read_days(raw_table(table), day(5))
        event = instance.get_latest_materialization_event(raw_key(table)).asset_materialization
        assert event.partition == day(5).isoformat()
        assert event.metadata["dagster/row_count"].value == stored.height
        assert event.metadata["delta_version"].value == lake.version(raw_table(table))
        assert event.metadata["partition_range"].value == f"{day(5)}..{day(5)}"
        assert stored["ds"].unique().to_list() in ([day(5)], [])
    assert all(c.passed for c in checks(result).values())
    assert set(checks(result)) == {f"raw_{t}" for t in CONTRACTS}


def test_rematerializing_a_day_replaces_it(resources, instance):
    materialize(resources, instance, day(5).isoformat())
    lake = resources["lake"]
    first = lake.read_days(raw_table("sessions"), day(5))
    version = lake.version(raw_table("sessions"))
    materialize(resources, instance, day(5).isoformat())
    again = lake.read_days(raw_table("sessions"), day(5))
    assert lake.version(raw_table("sessions")) == version + 1
    assert again.height == first.height > 0
    assert again.sort("session_id").equals(first.sort("session_id"))


def test_a_range_backfills_in_one_run(resources, instance):
    assert raw_ingest().backfill_policy == dg.BackfillPolicy.single_run()
    job = build_definitions().resolve_job_def("ingest_raw")
    result = job.execute_in_process(instance=instance, tags=range_tags(day(0), day(9)))
    assert result.success
    partitions = {e.partition for e in result.get_asset_materialization_events() if e.asset_key == raw_key("sessions")}
    assert partitions == {day(n).isoformat() for n in range(10)}
    assert len(instance.get_runs()) == 1
    days = resources["lake"].scan(raw_table("sessions")).select(pl.col("ds").n_unique()).collect().item()
    assert days == 10


@pytest.mark.parametrize("configured", ["run config", "setting"])
def test_a_range_is_stored_window_by_window_and_equals_the_source(resources, instance, monkeypatch, configured):
    """Ten days in windows of three (the run's config, else PLATFORM_INGEST_WINDOW_DAYS): four
    commits per table, every simulated row once, the counts summed."""
    job = build_definitions().resolve_job_def("ingest_raw")
    config = {"ops": {"raw_ingest": {"config": {"window_days": 3}}}}
    if configured == "setting":
        monkeypatch.setenv("PLATFORM_INGEST_WINDOW_DAYS", "3")
        config = {}
    lake = resources["lake"]
    result = job.execute_in_process(instance=instance, tags=range_tags(day(0), day(9)), run_config=config)
    assert result.success
    assert lake.version(raw_table("sessions")) == 3  # four commits: versions 0..3
    simulated = simulate(resources["source"].simulator, day(0), day(9))["sessions"]
    stored = lake.read_days(raw_table("sessions"), day(0), day(9))
    assert stored["session_id"].sort().equals(simulated["session_id"].sort())
    event = next(e for e in result.get_asset_materialization_events() if e.asset_key == raw_key("sessions"))
    assert event.event_specific_data.materialization.metadata["dagster/row_count"].value == simulated.height


def _land(home, table, when, text):
    folder = home / "landing" / table
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{when.isoformat()}.csv"
    path.write_text(text)
    return path


def test_a_landed_file_replaces_the_simulator_and_its_bad_rows_are_quarantined(home, resources, instance):
    path = _land(
        home,
        "cancellations",
        day(5),
        "customer_id,cancelled_on,reason\n11,2026-01-06,price\n12,2026-01-06,support\n13,someday,price\n",
    )
    result = materialize(
        resources, instance, day(5).isoformat(), selection=[raw_key("cancellations")], raise_on_error=False
    )
    assert not result.success  # a blocking contract check failed with ERROR: downstream must not run
    lake = resources["lake"]
    stored = lake.read_days(raw_table("cancellations"), day(5))
    assert stored["customer_id"].to_list() == [11, 12]
    assert stored["_source_file"].unique().to_list() == [str(path)]
    quarantined = lake.read_days(QUARANTINE, day(5)).filter(pl.col("table") == "cancellations")
    assert quarantined.height == 1
    row = quarantined.row(0, named=True)
    assert row["source_file"] == str(path) and row["source_row"] == 4
    assert row["reason"] == f"{path}, line 4: cancelled_on: dtype('Date'): not a date YYYY-MM-DD (got someday)"

    check = checks(result)["raw_cancellations"]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR  # 1 of 3 is above 5%
    assert "1 of 3 rows quarantined" in check.description
    assert "someday" in check.metadata["failure_cases"].value

    # Fixing the file and re-running the day clears the quarantine for it: no duplicates, no stale rows.
    path.write_text("customer_id,cancelled_on,reason\n11,2026-01-06,price\n")
    materialize(resources, instance, day(5).isoformat(), selection=[raw_key("cancellations")])
    assert lake.read_days(raw_table("cancellations"), day(5))["customer_id"].to_list() == [11]
    assert lake.read_days(QUARANTINE, day(5)).filter(pl.col("table") == "cancellations").height == 0


def test_an_unreadable_file_fails_the_run_by_name_and_line_and_is_kept(home, resources, instance):
    materialize(resources, instance, day(5).isoformat())
    lake = resources["lake"]
    before = lake.read_days(raw_table("cancellations"), day(5))
    path = _land(home, "cancellations", day(5), "customer_id,cancelled_on,reason\n11,2026-01-06,price,extra\n")

    result = materialize(resources, instance, day(5).isoformat(), raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure).event_specific_data.error.message
    assert f"{path}: line 2: expected 3 fields, found 4" in failure
    assert not path.exists()
    rejected = list((home / "landing" / "_rejected" / "cancellations").glob("2026-01-06.*.csv"))
    assert len(rejected) == 1 and "extra" in rejected[0].read_text()
    # The day's previous rows were not wiped by the failed delivery; other tables went on.
    assert lake.read_days(raw_table("cancellations"), day(5)).equals(before)
    materialized = {e.asset_key for e in result.get_asset_materialization_events()}
    assert raw_key("sessions") in materialized and raw_key("cancellations") not in materialized


@pytest.mark.parametrize("table", ["customers"])
def test_stored_schema_matches_what_is_written(resources, instance, table):
    materialize(resources, instance, day(0).isoformat(), selection=[raw_key(table)])
    stored = resources["lake"].read_days(raw_table(table), day(0))
    declared = raw_ingest().specs_by_key[raw_key(table)].metadata["dagster/column_schema"]
    assert [c.name for c in declared.columns] == stored.columns


def test_a_failure_case_table_keeps_one_row_per_value():
    from platform_assets.metadata import markdown_table

    table = markdown_table(pl.DataFrame({"failure_case": ["a\nb|c", None]}))
    assert table.splitlines() == ["| failure_case |", "|---|", "| a\\nb\\|c |", "|  |"]
