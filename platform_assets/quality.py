"""Enforcing a contract on a batch: typed good rows go on, bad rows go to quarantine.

Two stages, both columnar. Parsing turns landed strings into the contract's types;
a value that does not parse fails its row, not the file. Pandera then checks values
and cross-column rules, lazily, so every failure of every row is reported at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import accumulate

import duckdb
import pandera.polars as pa
import polars as pl

from platform_assets.contracts import CONTRACTS, PII

ROW = "_row"
QUARANTINE_SCHEMA = {
    "table": pl.String,
    "ds": pl.Date,
    "source_file": pl.String,
    "source_row": pl.Int64,
    "reason": pl.String,
    "record": pl.String,
    "quarantined_at": pl.Datetime("us", "UTC"),
}
FAILURE_COLUMNS = ["column", "check", "failure_case"]


@dataclass(frozen=True)
class Verdict:
    """What a contract made of a batch: stored rows, quarantined rows, and why."""

    good: pl.DataFrame
    quarantined: pl.DataFrame
    failures: pl.DataFrame  # one row per failing (row, column, check, value)

    @property
    def rows_in(self) -> int:
        return self.good.height + self.quarantined.height

    def failure_summary(self, limit: int = 20) -> pl.DataFrame:
        """Failures counted by column, check and value, most frequent first."""
        return (
            self.failures.group_by(FAILURE_COLUMNS)
            .agg(pl.len().alias("count"))
            .sort(["count", "column", "check"], descending=[True, False, False])
            .head(limit)
        )


def enforce(table: str, frames: list[pl.DataFrame], salt: str) -> Verdict:
    """Parse, validate and split a batch of one raw table (frames carry ``_source_*`` columns)."""
    contract = CONTRACTS[table].to_schema()
    dtypes = {name: column.dtype.type for name, column in contract.columns.items()}
    parsed = [_parse(frame, dtypes) for frame in frames]
    batch = pl.concat([p for p, _ in parsed], how="vertical") if parsed else _empty(dtypes)
    batch = batch.with_row_index(ROW)
    offsets = accumulate((p.height for p, _ in parsed), initial=0)  # where each frame starts in the batch
    failures = [f.with_columns(pl.col(ROW) + offset) for (_, f), offset in zip(parsed, offsets, strict=False)]
    failures.append(_contract_failures(contract, batch, list(dtypes)))
    failures = pl.concat(failures, how="vertical")

    bad_rows = failures.select(ROW).unique()
    good = batch.join(bad_rows, on=ROW, how="anti").drop(ROW)
    bad = batch.join(bad_rows, on=ROW, how="semi")
    reasons = failures.group_by(ROW).agg(
        pl.concat_str(
            pl.col("column"),
            pl.lit(": "),
            pl.col("check"),
            pl.lit(" (got "),
            pl.col("failure_case").fill_null("null"),
            pl.lit(")"),
        )
        .str.join("; ")
        .alias("_reason")
    )
    masked = _pseudonymize(table, bad, salt)
    quarantined = masked.join(reasons, on=ROW).select(
        pl.lit(table).alias("table"),
        pl.col("ds"),
        pl.col("_source_file").alias("source_file"),
        pl.col("_source_row").alias("source_row"),
        pl.col("_reason").alias("reason"),
        pl.struct(pl.exclude(ROW, "_reason", "_source_file", "_source_row")).struct.json_encode().alias("record"),
        pl.lit(datetime.now(UTC)).cast(QUARANTINE_SCHEMA["quarantined_at"]).alias("quarantined_at"),
    )
    return Verdict(
        good=_pseudonymize(table, good, salt),
        quarantined=quarantined.cast(QUARANTINE_SCHEMA),
        failures=failures,
    )


def _empty(dtypes: dict[str, pl.DataType]) -> pl.DataFrame:
    return pl.DataFrame(schema={**dtypes, "_source_file": pl.String, "_source_row": pl.Int64})


def _parse(frame: pl.DataFrame, dtypes: dict[str, pl.DataType]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Cast each column to its contract type; a value that does not parse fails its row."""
    casts = {name: _cast(pl.col(name), frame.schema[name], dtype) for name, dtype in dtypes.items()}
    typed = frame.with_columns(**casts)
    lost = [
        frame.with_row_index(ROW)
        .filter(pl.col(name).is_not_null() & typed[name].is_null())
        .select(
            pl.col(ROW).cast(pl.UInt32),
            pl.lit(name).alias("column"),
            pl.lit(f"dtype('{dtype}')").alias("check"),
            pl.col(name).cast(pl.String).alias("failure_case"),
        )
        for name, dtype in dtypes.items()
        if frame.schema[name] != dtype
    ]
    failures = pl.concat(lost, how="vertical") if lost else _no_failures()
    return typed, failures


def _cast(column: pl.Expr, source: pl.DataType, target: pl.DataType) -> pl.Expr:
    if source == target:
        return column
    if source == pl.String and target == pl.Date:
        return column.str.strip_chars().str.to_date("%Y-%m-%d", strict=False)
    if source == pl.String and isinstance(target, pl.Datetime):
        return column.str.strip_chars().str.to_datetime(time_unit=target.time_unit, strict=False)
    if source == pl.String:
        return column.str.strip_chars().cast(target, strict=False)
    return column.cast(target, strict=False)


def _no_failures() -> pl.DataFrame:
    return pl.DataFrame(schema={ROW: pl.UInt32, "column": pl.String, "check": pl.String, "failure_case": pl.String})


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
    return _no_failures()


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
