"""Raw tables: one daily-partitioned Delta table per source table, behind its contract.

One multi-asset loads every selected table in one step, because the simulator
produces all tables of a day together; it is subsettable, so the landing sensor can
refresh one table's day alone. Backfills of a range run as one run.
"""

from datetime import timedelta

import dagster as dg
import polars as pl
from pydantic import Field

from platform_assets.contracts import CONTRACTS, PII, key_columns, landed_columns
from platform_assets.metadata import OWNER, markdown_table, table_schema
from platform_assets.partitions import daily_partitions
from platform_assets.quality import QUARANTINE_SCHEMA, enforce
from resources.lake import Lake
from resources.privacy import Privacy
from resources.sources import RawSource

QUARANTINE = "quarantine"
CONTRACT_CHECK = "contract"
LINEAGE_COLUMNS = {
    "_source_file": "File the row came from, or 'simulator'.",
    "_source_row": "Line of the row in its file (row number for Parquet and the simulator).",
}


def raw_key(table: str) -> dg.AssetKey:
    return dg.AssetKey(f"raw_{table}")


def lake_table(table: str) -> str:
    return f"raw/{table}"


def _stored_columns(table: str) -> dict[str, tuple[pl.DataType, str]]:
    """The columns as stored: the contract's, with PII dropped or hashed, plus lineage."""
    rules = PII.get(table, {})
    columns: dict[str, tuple[pl.DataType, str]] = {}
    for name, column in CONTRACTS[table].to_schema().columns.items():
        if rules.get(name) == "hash":
            columns[f"{name}_sha256"] = (pl.String, f"Salted SHA-256 of the lower-cased {name} (pseudonymized PII).")
        elif rules.get(name) != "drop":
            columns[name] = (column.dtype.type, column.description or "")
    columns["_source_file"] = (pl.String, LINEAGE_COLUMNS["_source_file"])
    columns["_source_row"] = (pl.Int64, LINEAGE_COLUMNS["_source_row"])
    return columns


def stored_schema(table: str) -> dg.TableSchema:
    return table_schema(_stored_columns(table))


def create_missing_tables(lake: Lake) -> list[str]:
    """Create the raw and quarantine tables that do not exist yet, empty; returns their names."""
    tables = {lake_table(t): {n: dtype for n, (dtype, _) in _stored_columns(t).items()} for t in CONTRACTS}
    tables[QUARANTINE] = QUARANTINE_SCHEMA
    return [name for name, schema in tables.items() if lake.create(name, schema)]


def _spec(table: str) -> dg.AssetSpec:
    model = CONTRACTS[table]
    return dg.AssetSpec(
        key=raw_key(table),
        description=(
            f"Raw {table.replace('_', ' ')}, one Delta partition per landing day. "
            f"{(model.__doc__ or '').strip()} Rows that break the contract are in the quarantine table."
        ),
        group_name="raw",
        kinds={"delta", "polars", "pandera"},
        owners=[OWNER],
        partitions_def=daily_partitions,
        metadata={"dagster/column_schema": stored_schema(table), "lake_table": lake_table(table)},
        tags={"layer": "raw"},
    )


class RawIngestConfig(dg.Config):
    max_quarantine_fraction: float = Field(
        default=0.05,
        description="Above this share of quarantined rows the contract check fails with ERROR and blocks downstream.",
    )


@dg.multi_asset(
    name="raw_ingest",
    specs=[_spec(t) for t in CONTRACTS],
    check_specs=[
        dg.AssetCheckSpec(
            CONTRACT_CHECK,
            asset=raw_key(t),
            blocking=True,
            description="Rows break the Pandera contract: WARN when some are quarantined, ERROR (blocking) above the allowed share.",
        )
        for t in CONTRACTS
    ],
    can_subset=True,
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
)
def raw_tables(
    context: dg.AssetExecutionContext, config: RawIngestConfig, lake: Lake, source: RawSource, privacy: Privacy
):
    window = context.partition_time_window
    first, last = window.start.date(), (window.end - timedelta(days=1)).date()
    tables = [t for t in CONTRACTS if raw_key(t) in context.selected_asset_keys]
    context.log.info(f"Loading {', '.join(tables)} for {first}..{last}")
    frames, rejected = source.load({t: landed_columns(t) for t in tables}, first, last, list(CONTRACTS))
    for item in rejected:
        context.log.error(f"Moved aside {item}")
    failed = [item for item in rejected if item.day is not None and first <= item.day <= last]

    for table in tables:
        if any(item.table == table for item in failed):
            context.log.error(f"Not storing {table} for {first}..{last}: a landed file of these days was moved aside.")
            continue
        verdict = enforce(table, frames[table], privacy.salt(), stored=_stored_keys(lake, table, first, last))
        version = lake.replace_days(lake_table(table), verdict.good, first, last)
        lake.replace_days(
            QUARANTINE,
            verdict.quarantined if verdict.quarantined.height else pl.DataFrame(schema=QUARANTINE_SCHEMA),
            first,
            last,
            extra=f"table = '{table}'",
        )
        context.log.info(
            f"{table}: {verdict.rows_in} rows in, {verdict.good.height} stored (Delta v{version}), "
            f"{verdict.quarantined.height} quarantined"
        )
        yield dg.MaterializeResult(
            asset_key=raw_key(table),
            metadata={
                "dagster/row_count": verdict.good.height,
                "rows_in": verdict.rows_in,
                "rows_quarantined": verdict.quarantined.height,
                "delta_version": version,
                "partition_range": f"{first}..{last}",
                "dagster/uri": lake.uri(lake_table(table)),
                "sources": ", ".join(sorted(verdict.good["_source_file"].unique().to_list())[:10]) or "none",
                "preview": dg.MetadataValue.md(markdown_table(verdict.good, 5)),
            },
        )
        yield _contract_result(table, verdict, config.max_quarantine_fraction, lake)

    if rejected:
        rows = {t: sum(item.rows for item in failed if item.table == t) for t in tables}
        raise dg.Failure(
            description="Landed files could not be ingested and were moved aside:\n"
            + "\n".join(f"- {item}" for item in rejected),
            metadata={
                "rejected_files": [str(item.path) for item in rejected],
                "rows_in_rejected_files": {t: n for t, n in rows.items() if n},
            },
        )


def _stored_keys(lake: Lake, table: str, first, last) -> pl.LazyFrame | None:
    """Keys already stored on days outside ``first..last`` (those days are being replaced)."""
    if not lake.exists(lake_table(table)):
        return None
    return (
        lake.scan(lake_table(table))
        .filter(~pl.col("ds").is_between(first, last))
        .select(*key_columns(table), "ds", "_source_file", "_source_row")
    )


def _contract_result(table: str, verdict, max_fraction: float, lake: Lake) -> dg.AssetCheckResult:
    bad = verdict.quarantined.height
    fraction = bad / verdict.rows_in if verdict.rows_in else 0.0
    summary = verdict.failure_summary()
    return dg.AssetCheckResult(
        asset_key=raw_key(table),
        check_name=CONTRACT_CHECK,
        passed=bad == 0,
        severity=dg.AssetCheckSeverity.ERROR if fraction > max_fraction else dg.AssetCheckSeverity.WARN,
        description=(
            f"{bad} of {verdict.rows_in} rows quarantined ({fraction:.2%}; allowed {max_fraction:.0%})"
            if bad
            else f"All {verdict.rows_in} rows meet the contract"
        ),
        metadata={
            "rows_in": verdict.rows_in,
            "rows_stored": verdict.good.height,
            "rows_quarantined": bad,
            "quarantine_fraction": fraction,
            "failure_cases": dg.MetadataValue.md(markdown_table(summary, 20) if summary.height else "none"),
            "quarantine_table": lake.uri(QUARANTINE),
        },
    )
