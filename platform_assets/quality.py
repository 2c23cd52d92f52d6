"""Enforcing a contract on a batch: typed good rows go on, bad rows go to quarantine.

Three stages, all columnar. Parsing turns landed values into the contract's types
(``platform_assets.parsing``); a value that does not fit fails its row, not the file.
Keys are checked across files and days: an exact copy of a row is stored once, a key
seen on two days keeps its first day's row, two different rows for one key on one day
are both held back, and a key already stored on another day is never stored again.
Pandera then checks values and cross-column rules, lazily, so every failure of every
row is reported at once.

Reasons name the file, the line, the column and the value; values of personal-data
columns are masked and long values cut, so a reason is safe to show anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import accumulate

import duckdb
import pandera.polars as pa
import polars as pl

from platform_assets.contracts import CONTRACTS, PII, key_columns
from platform_assets.parsing import INVISIBLE, ROW, no_failures, parse
from platform_assets.tables import QUARANTINE

MASK = "<masked>"
SHOWN_CHARS = 60
FAILURE_COLUMNS = ["column", "check", "failure_case"]
LINEAGE = ["_source_file", "_source_row"]


@dataclass(frozen=True)
class ContractVerdict:
    """What a contract made of a batch: stored rows, quarantined rows, and why."""

    good: pl.DataFrame
    quarantined: pl.DataFrame
    failures: pl.DataFrame  # one row per failing (row, column, check, value), values masked

    @property
    def rows_in(self) -> int:
        return self.good.height + self.quarantined.height

    def failure_summary(self, limit: int = 20) -> pl.DataFrame:
        """Failures counted by column, check and value, most frequent first."""
        return self.summarize(self.failures, limit)

    @staticmethod
    def summarize(failures: pl.DataFrame, limit: int = 20) -> pl.DataFrame:
        return (
            failures.group_by(FAILURE_COLUMNS)
            .agg(pl.len().alias("count"))
            .sort(["count", "column", "check"], descending=[True, False, False])
            .head(limit)
        )


def enforce(table: str, frames: list[pl.DataFrame], salt: str, stored: pl.LazyFrame | None = None) -> ContractVerdict:
    """Parse, check keys, validate and split a batch of one raw table.

    ``frames`` carry ``ds`` and ``_source_*`` columns; ``stored`` holds the key columns,
    ``ds`` and lineage of the rows already stored on days outside the batch.
    """
    contract = CONTRACTS[table].to_schema()
    dtypes = {name: column.dtype.type for name, column in contract.columns.items()}
    parsed = [parse(frame, dtypes) for frame in frames]
    batch = pl.concat([p for p, _ in parsed], how="vertical") if parsed else _empty(dtypes)
    batch = batch.with_row_index(ROW)
    offsets = list(accumulate((p.height for p, _ in parsed), initial=0))  # where each frame starts in the batch
    failures = [f.with_columns(pl.col(ROW) + offset) for (_, f), offset in zip(parsed, offsets, strict=False)]
    unparsed = pl.concat(failures, how="vertical") if failures else no_failures()
    keys = {name: {"unique": False} for name in key_columns(table) if contract.columns[name].unique}
    checked = _contract_failures(contract.update_columns(keys), batch, list(dtypes))
    failures = [
        unparsed,
        _key_failures(batch.join(unparsed, on=ROW, how="anti"), key_columns(table), stored),
        checked.join(unparsed, on=[ROW, "column"], how="anti"),  # a value that did not parse is reported once
    ]
    failures = _masked(table, pl.concat(failures, how="vertical"))

    bad_rows = failures.select(ROW).unique()
    good = batch.join(bad_rows, on=ROW, how="anti").drop(ROW)
    bad = batch.join(bad_rows, on=ROW, how="semi")
    where = pl.concat_str(
        pl.col("_source_file"),
        pl.when(
            pl.col("_source_file").str.to_lowercase().str.ends_with(".parquet")
            | (pl.col("_source_file") == "simulator")
        )
        .then(pl.lit(", row "))
        .otherwise(pl.lit(", line ")),
        pl.col("_source_row").cast(pl.String),
        pl.lit(": "),
    )
    reasons = failures.group_by(ROW).agg(
        pl.concat_str(
            pl.col("column"),
            pl.lit(": "),
            pl.col("check"),
            pl.lit(" (got "),
            pl.col("failure_case").fill_null("null"),
            pl.lit(")"),
        )
        .sort()
        .str.join("; ")
        .alias("_reason")
    )
    landed = _as_landed(frames, offsets, bad_rows)
    record = pl.struct(pl.exclude(ROW, "ds", *LINEAGE)).struct.json_encode().alias("record")
    records = (
        _pseudonymize(table, landed, salt).select(ROW, record)
        if landed.height
        else pl.DataFrame(schema={ROW: pl.UInt32, "record": pl.String})
    )
    quarantined = (
        bad.select(ROW, "ds", *LINEAGE)
        .join(reasons, on=ROW)
        .join(records, on=ROW, how="left")
        .sort(ROW)
        .select(
            pl.lit(table).alias("table"),
            pl.col("ds"),
            pl.col("_source_file").alias("source_file"),
            pl.col("_source_row").alias("source_row"),
            pl.concat_str(where, pl.col("_reason")).alias("reason"),
            pl.col("record"),
            pl.lit(datetime.now(UTC)).cast(QUARANTINE.schema["quarantined_at"]).alias("quarantined_at"),
        )
    )
    return ContractVerdict(
        good=_pseudonymize(table, good, salt),
        quarantined=quarantined.cast(QUARANTINE.schema),
        failures=failures,
    )


def _empty(dtypes: dict[str, pl.DataType]) -> pl.DataFrame:
    return pl.DataFrame(schema={**dtypes, "_source_file": pl.String, "_source_row": pl.Int64})


def _as_landed(frames: list[pl.DataFrame], offsets: list[int], rows: pl.DataFrame) -> pl.DataFrame:
    """The quarantined rows as they landed (as text), so the quarantine keeps the values that failed."""
    picked = [
        frame.with_row_index(ROW, offset=offset).join(rows, on=ROW, how="semi").select(pl.all().cast(pl.String))
        for frame, offset in zip(frames, offsets, strict=False)
    ]
    picked = [p.with_columns(pl.col(ROW).cast(pl.UInt32)) for p in picked if p.height]
    return pl.concat(picked, how="diagonal") if picked else pl.DataFrame(schema={ROW: pl.UInt32})


def _masked(table: str, failures: pl.DataFrame) -> pl.DataFrame:
    """Failure values safe to show: personal data masked, long values cut, one line each.

    Line breaks are shown as ``\\n``/``\\r`` and other control or invisible characters as
    ``<ctrl>``, so a value never breaks a reason, a log line or a failure-case table.
    """
    value = (
        pl.col("failure_case")
        .str.replace_all("\r", "\\r", literal=True)
        .str.replace_all("\n", "\\n", literal=True)
        .str.replace_all(INVISIBLE, "<ctrl>")
    )
    length = value.str.len_chars()
    return failures.with_columns(
        pl.when(pl.col("column").is_in(list(PII.get(table, {}))))
        .then(pl.lit(MASK))
        .when(length > SHOWN_CHARS)
        .then(
            pl.concat_str(value.str.slice(0, SHOWN_CHARS), pl.lit("... ("), length.cast(pl.String), pl.lit(" chars)"))
        )
        .otherwise(value)
        .alias("failure_case")
    )


def _key_failures(batch: pl.DataFrame, keys: list[str], stored: pl.LazyFrame | None) -> pl.DataFrame:
    """Rows whose key repeats in the batch or is already stored, earliest (day, file, line) first."""
    at = pl.concat_str(pl.col("_source_file"), pl.lit(" line "), pl.col("_source_row").cast(pl.String))
    column = pl.lit(keys[0] if len(keys) == 1 else "<row>")
    case = pl.col(keys[0]).cast(pl.String) if len(keys) == 1 else pl.lit("row")
    compare = [c for c in batch.columns if c not in (ROW, "ds", *LINEAGE)]
    keyed = batch.filter(pl.all_horizontal(pl.col(k).is_not_null() for k in keys))
    repeated = (
        keyed.filter(pl.struct(keys).is_duplicated())
        .sort("ds", *LINEAGE)
        .with_columns(_first=pl.col(ROW).first().over(compare), _first_at=at.first().over(compare))
    )
    distinct = (
        repeated.filter(pl.col(ROW) == pl.col("_first"))
        .with_columns(_day=pl.col("ds").min().over(keys), _first_at=at.first().over(keys))
        .with_columns(_same_day=pl.len().over(*keys, "ds"))
    )
    found = [
        repeated.filter(pl.col(ROW) != pl.col("_first")).select(
            ROW,
            column.alias("column"),
            pl.concat_str(pl.lit("exact duplicate of "), "_first_at").alias("check"),
            case.alias("failure_case"),
        ),
        distinct.filter(pl.col("ds") > pl.col("_day")).select(
            ROW,
            column.alias("column"),
            pl.concat_str(
                pl.lit("key first landed on "), pl.col("_day").cast(pl.String), pl.lit(" in "), "_first_at"
            ).alias("check"),
            case.alias("failure_case"),
        ),
        distinct.filter((pl.col("ds") == pl.col("_day")) & (pl.col("_same_day") > 1)).select(
            ROW, column.alias("column"), pl.lit("field_uniqueness").alias("check"), case.alias("failure_case")
        ),
    ]
    if stored is not None:
        # Filter the stored side by the batch's keys in the scan: a day's batch against a
        # long history reads the matching rows, not the history's lineage columns.
        wanted = pl.all_horizontal(pl.col(k).is_in(keyed[k].unique().implode()) for k in keys)
        hits = (
            keyed.lazy()
            .select(ROW, *keys)
            .join(stored.filter(wanted).select(*keys, "ds", *LINEAGE), on=keys, how="inner")
            .group_by(ROW)
            .agg(pl.all().sort_by("ds").first())
            .collect()
        )
        found.append(
            hits.select(
                ROW,
                column.alias("column"),
                pl.concat_str(
                    pl.lit("key already stored on "), pl.col("ds").cast(pl.String), pl.lit(" from "), at
                ).alias("check"),
                case.alias("failure_case"),
            )
        )
    return pl.concat([f.cast(no_failures().schema) for f in found], how="vertical")


def _contract_failures(contract: pa.DataFrameSchema, batch: pl.DataFrame, columns: list[str]) -> pl.DataFrame:
    """Run the Pandera contract; map its failure cases to rows of the batch.

    A failure without a row index concerns the whole batch (a missing column, a wrong
    type after parsing): it fails every row, so nothing half-checked is stored.
    """
    try:
        contract.validate(batch.select(columns), lazy=True)
    except pa.errors.SchemaErrors as errors:
        cases = errors.failure_cases
        per_row = cases.filter(pl.col("index").is_not_null())
        whole = cases.filter(pl.col("index").is_null())
        rows = per_row.select(
            pl.col("index").cast(pl.UInt32).alias(ROW),
            pl.when(pl.col("schema_context") == "DataFrameSchema")
            .then(pl.lit("<row>"))
            .otherwise(pl.col("column"))
            .alias("column"),
            pl.col("check"),
            pl.when(pl.col("schema_context") == "DataFrameSchema")
            .then(pl.lit("row"))
            .otherwise(pl.col("failure_case"))
            .alias("failure_case"),
        )
        if whole.height:
            everywhere = batch.select(ROW).join(
                whole.select("column", "check", pl.col("failure_case").cast(pl.String)), how="cross"
            )
            rows = pl.concat([rows, everywhere], how="vertical")
        return rows
    return no_failures()


def _pseudonymize(table: str, frame: pl.DataFrame, salt: str) -> pl.DataFrame:
    """Drop or hash the table's PII columns before anything is stored."""
    rules = PII.get(table, {})
    if not rules:
        return frame
    hashed = [name for name, rule in rules.items() if rule == "hash"]
    # polars has no cryptographic hash; DuckDB's sha256 runs columnar on the Arrow data.
    with duckdb.connect() as con:
        con.register("batch", frame.select(hashed))
        digests = con.sql(
            "select " + ", ".join(f"sha256(? || lower({c})) as {c}_sha256" for c in hashed) + " from batch",
            params=[salt] * len(hashed),
        ).pl()
    order = [f"{c}_sha256" if rules.get(c) == "hash" else c for c in frame.columns if rules.get(c) != "drop"]
    return frame.hstack(digests.cast({f"{c}_sha256": pl.String for c in hashed})).select(order)
