"""Each raw contract quarantines a crafted bad row with the right reason; good rows go on."""

import datetime as dt

import polars as pl
import pytest

from platform_assets.contracts import CONTRACTS, LATENESS_DAYS, landed_columns, may_empty_day
from platform_assets.quality import enforce
from simulator.config import SimulatorConfig
from simulator.world import simulate
from tests.conftest import day

# table -> (column to spoil, spoiled value as it would arrive in a CSV, expected reason)
SPOILERS = {
    "customers": ("plan", "gold", "plan: isin"),
    "sessions": ("duration_minutes", "-5", "duration_minutes: greater_than_or_equal_to(0)"),
    "support_tickets": ("resolved_at", "2025-12-01 00:00:00", "resolved_at is before opened_at"),
    "promotions": ("offered_on", "not a date", "offered_on: dtype('Date')"),
    "plan_changes": ("to_plan", None, "to_plan: not_nullable"),
    "cancellations": ("cancelled_on", "2026-13-45", "cancelled_on: dtype('Date')"),
}


@pytest.fixture(scope="module")
def landed():
    """A day of every table as it would arrive in CSV files: all strings, with lineage columns."""
    config = SimulatorConfig(customers=4000, days=30)
    frames = simulate(config, day(3), day(9))
    return {
        table: frame.with_columns(pl.exclude("ds").cast(pl.String)).with_columns(
            pl.lit(f"landing/{table}/2026-01-04.csv").alias("_source_file"),
            pl.int_range(2, pl.len() + 2, dtype=pl.Int64).alias("_source_row"),
        )
        for table, frame in frames.items()
    }


def test_spoilers_cover_every_contract():
    assert set(SPOILERS) == set(CONTRACTS)


@pytest.mark.parametrize("table", sorted(SPOILERS))
def test_contract_quarantines_a_bad_row_and_keeps_the_rest(landed, table):
    column, value, reason = SPOILERS[table]
    frame = landed[table]
    assert frame.height >= 3, "the fixture day needs rows for this table"
    spoiled = frame.with_columns(
        pl.when(pl.int_range(pl.len()) == 1)
        .then(pl.lit(value, dtype=pl.String))
        .otherwise(pl.col(column))
        .alias(column)
    )
    verdict = enforce(table, [spoiled], salt="test")

    assert verdict.rows_in == frame.height
    assert verdict.good.height + verdict.quarantined.height == frame.height
    assert verdict.quarantined.height == 1
    bad = verdict.quarantined.row(0, named=True)
    assert reason in bad["reason"]
    assert bad["source_file"] == f"landing/{table}/2026-01-04.csv"
    assert bad["source_row"] == 3  # second data line: the header is line 1
    assert bad["table"] == table and bad["ds"] == frame["ds"][1]
    summary = verdict.failure_summary()
    assert summary.filter(pl.col("column") != "<row>").height or "<row>" in summary["column"].to_list()


def test_an_exact_copy_of_a_row_is_stored_once(landed):
    frame = landed["cancellations"]
    copy = frame.head(1).with_columns(pl.lit(frame.height + 2, dtype=pl.Int64).alias("_source_row"))
    verdict = enforce("cancellations", [pl.concat([frame, copy])], salt="test")
    assert verdict.good.height == frame.height
    (reason,) = verdict.quarantined["reason"].to_list()
    assert (
        f"line {frame.height + 2}: customer_id: exact duplicate of landing/cancellations/2026-01-04.csv line 2"
        in reason
    )


def test_two_different_rows_for_one_key_on_one_day_are_both_held_back(landed):
    frame = landed["cancellations"]
    clash = frame.head(1).with_columns(pl.lit("another reason").alias("reason"))
    verdict = enforce("cancellations", [pl.concat([frame, clash])], salt="test")
    assert verdict.quarantined.height == 2
    assert all("customer_id: field_uniqueness" in r for r in verdict.quarantined["reason"])
    assert verdict.good.height == frame.height - 1


def test_a_key_keeps_its_first_day_within_a_batch_and_across_batches(landed):
    frame = landed["cancellations"].head(2)
    later = frame.head(1).with_columns(pl.col("ds") + pl.duration(days=2), pl.lit("later").alias("reason"))
    verdict = enforce("cancellations", [frame, later], salt="test")
    assert verdict.good["customer_id"].to_list() == frame["customer_id"].cast(pl.Int64).to_list()
    (reason,) = verdict.quarantined["reason"].to_list()
    assert f"key first landed on {frame['ds'][0]}" in reason

    # The same row landing alone later meets the stored key: quarantined, not stored twice.
    stored = verdict.good.lazy()
    again = enforce("cancellations", [later], salt="test", stored=stored)
    assert again.good.height == 0
    assert f"customer_id: key already stored on {frame['ds'][0]}" in again.quarantined["reason"][0]


def test_a_simulated_day_meets_every_contract(landed):
    for table in CONTRACTS:
        verdict = enforce(table, [landed[table]], salt="test")
        assert verdict.quarantined.height == 0, verdict.quarantined["reason"].to_list()[:3]


def test_personal_data_never_leaves_raw_ingestion(landed):
    frame = landed["customers"]
    spoiled = frame.with_columns(pl.when(pl.int_range(pl.len()) == 0).then(pl.lit("x")).otherwise("plan").alias("plan"))
    verdict = enforce("customers", [spoiled], salt="pepper")
    assert "name" not in verdict.good.columns and "email" not in verdict.good.columns
    assert verdict.good["email_sha256"].str.len_chars().unique().to_list() == [64]
    emails = set(frame["email"].to_list())
    names = set(frame["name"].to_list())
    for record in verdict.quarantined["record"]:
        assert not any(e in record for e in emails) and not any(n in record for n in names)
    # Same email, same hash (joins still work); another salt, another hash.
    hashes = dict(verdict.good.select("customer_id", "email_sha256").iter_rows())
    again = enforce("customers", [frame.slice(1, 3)], salt="pepper").good
    assert all(hashes[c] == h for c, h in again.select("customer_id", "email_sha256").iter_rows())
    other = enforce("customers", [frame.slice(1, 3)], salt="salt").good["email_sha256"]
    assert set(other).isdisjoint(set(again["email_sha256"]))


def test_landed_columns_leave_out_the_partition_day():
    assert "ds" not in landed_columns("sessions")
    assert landed_columns("customers")[:3] == ["customer_id", "name", "email"]


# table -> its event's date column: every event table refuses an event after its landing day
EVENT_DATES = {
    "customers": ("signup_date", "2099-01-01"),
    "sessions": ("started_at", "2099-01-01 10:00:00"),
    "support_tickets": ("opened_at", "2099-01-01 10:00:00"),
    "promotions": ("offered_on", "2099-01-01"),
    "plan_changes": ("changed_on", "2099-01-01"),
    "cancellations": ("cancelled_on", "2099-01-01"),
}


def spoil(frame: pl.DataFrame, column: str, value: str | None) -> pl.DataFrame:
    """The frame with the second row's ``column`` set to ``value`` (as landed text)."""
    return frame.with_columns(
        pl.when(pl.int_range(pl.len()) == 1)
        .then(pl.lit(value, dtype=pl.String))
        .otherwise(pl.col(column))
        .alias(column)
    )


def test_every_event_table_is_checked_against_its_landing_day():
    assert set(EVENT_DATES) == set(CONTRACTS)


@pytest.mark.parametrize("table", sorted(EVENT_DATES))
def test_an_event_dated_after_its_landing_day_is_quarantined(landed, table):
    column, value = EVENT_DATES[table]
    verdict = enforce(table, [spoil(landed[table], column, value)], salt="test")
    (reason,) = verdict.quarantined["reason"].to_list()
    assert f"{column} is after the day the record landed" in reason


@pytest.mark.parametrize("table", sorted(set(EVENT_DATES) - {"customers"}))
def test_an_event_older_than_the_declared_lateness_is_quarantined(landed, table):
    column, _ = EVENT_DATES[table]
    frame = landed[table]
    old = (frame["ds"][1] - dt.timedelta(days=LATENESS_DAYS + 1)).isoformat()
    verdict = enforce(table, [spoil(frame, column, old + (" 10:00:00" if column.endswith("_at") else ""))], salt="t")
    reasons = verdict.quarantined["reason"].to_list()
    assert len(reasons) == 1 and f"{column} is more than {LATENESS_DAYS} days before" in reasons[0], reasons


@pytest.mark.parametrize("value", ["NULL", "N/A", "None", "-", "   ", "null", "n/a"])
def test_null_markers_mean_no_value_in_every_column_type(landed, value):
    for table, column in [("support_tickets", "resolved_at"), ("promotions", "responded_on")]:
        verdict = enforce(table, [spoil(landed[table], column, value)], salt="test")
        assert verdict.quarantined.height == 0, verdict.quarantined["reason"].to_list()
        assert verdict.good[column][1] is None
    for table, column in [("cancellations", "reason"), ("cancellations", "customer_id"), ("sessions", "started_at")]:
        verdict = enforce(table, [spoil(landed[table], column, value)], salt="test")
        (reason,) = verdict.quarantined["reason"].to_list()
        assert f"{column}: not_nullable (got null)" in reason


def test_text_is_stripped_and_nfc_normalised_and_invisible_characters_are_refused(landed):
    frame = landed["customers"]
    decomposed = "Nord" + "e\u0301"  # e + combining acute: NFC makes it one character
    verdict = enforce("customers", [spoil(frame, "region", f"  {decomposed} ")], salt="test")
    assert verdict.good["region"][1] == "Nord\u00e9"
    for bad in ["ads\u200b", "\x1b[31mads", "a\u202eb"]:
        verdict = enforce("customers", [spoil(frame, "acquisition_channel", bad)], salt="test")
        (reason,) = verdict.quarantined["reason"].to_list()
        assert "acquisition_channel: dtype('String'): not text, or holds a control or invisible character" in reason
        assert "\x1b" not in reason and "\u200b" not in reason and "\u202e" not in reason


def test_dates_before_the_declared_earliest_are_quarantined(landed):
    verdict = enforce("customers", [spoil(landed["customers"], "signup_date", "0001-01-01")], salt="test")
    (reason,) = verdict.quarantined["reason"].to_list()
    assert "signup_date: greater_than_or_equal_to(2000-01-01)" in reason


def test_no_contract_allows_emptying_a_stored_day_unless_it_says_so():
    assert not any(may_empty_day(table) for table in CONTRACTS)
