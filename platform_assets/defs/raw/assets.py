"""Raw tables: one daily-partitioned Delta table per source table, behind its contract.

One multi-asset loads every selected table in one step, because the simulator
produces all tables of a day together; it is subsettable, so the landing sensor can
refresh one table's day alone. Backfills of a range run as one run.
"""

from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import cache

import dagster as dg
import polars as pl
from pydantic import Field

from platform_assets.contracts import CONTRACTS, PII, key_columns, known_columns, landed_columns, may_empty_day
from platform_assets.landing import Held
from platform_assets.metadata import layer, markdown_table, table_schema
from platform_assets.partitions import daily_partitions
from platform_assets.quality import ContractVerdict, enforce, no_failures
from platform_assets.raw_source import load_days
from platform_assets.tables import QUARANTINE, raw_table
from resources.lake import Lake
from resources.privacy import Privacy
from resources.settings import settings
from resources.sources import RawSource

CONTRACT_CHECK = "contract"
LINEAGE_COLUMNS = {
    "_source_file": "File the row came from, or 'simulator'.",
    "_source_row": "Line of the row in its file (row number for Parquet and the simulator).",
}


def raw_key(table: str) -> dg.AssetKey:
    return dg.AssetKey(f"raw_{table}")


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
    tables = {raw_table(t): {n: dtype for n, (dtype, _) in _stored_columns(t).items()} for t in CONTRACTS}
    tables[QUARANTINE] = QUARANTINE.schema
    return [name for name, schema in tables.items() if lake.create(name, schema)]


def _spec(table: str) -> dg.AssetSpec:
    model = CONTRACTS[table]
    return dg.AssetSpec(
        key=raw_key(table),
        description=(
            f"Raw {table.replace('_', ' ')}, one Delta partition per landing day. "
            f"{(model.__doc__ or '').strip()} Rows that break the contract are in the quarantine table."
        ),
        **layer("raw"),
        kinds={"delta", "polars", "pandera"},
        partitions_def=daily_partitions(),
        metadata={"dagster/column_schema": stored_schema(table), "raw_table": raw_table(table)},
    )


class RawIngestConfig(dg.Config):
    max_quarantine_fraction: float = Field(
        default=0.05,
        description="Above this share of quarantined rows the contract check fails with ERROR and blocks downstream.",
    )
    window_days: int | None = Field(
        default=None,
        ge=1,
        description=(
            "A range is loaded, checked and stored this many days at a time, so memory stays that of a window; "
            "unset, PLATFORM_INGEST_WINDOW_DAYS."
        ),
    )


@dataclass
class _Tally:
    """What a table's windows added up to, for its materialization and contract check."""

    rows_in: int = 0
    stored: int = 0
    failures: list[pl.DataFrame] = field(default_factory=list)
    sources: set[str] = field(default_factory=set)
    preview: pl.DataFrame | None = None
    version: int | None = None

    @property
    def quarantined(self) -> int:
        return self.rows_in - self.stored

    def add(self, verdict: ContractVerdict, version: int) -> None:
        self.rows_in += verdict.rows_in
        self.stored += verdict.good.height
        self.failures.append(verdict.failures)
        self.sources.update(verdict.good["_source_file"].unique().to_list())
        if self.preview is None or self.preview.is_empty():
            self.preview = verdict.good.head(5)
        self.version = version

    def failure_summary(self) -> pl.DataFrame:
        return ContractVerdict.summarize(pl.concat(self.failures, how="vertical") if self.failures else no_failures())


def _windows(first: date, last: date, days: int) -> list[tuple[date, date]]:
    starts = pl.date_range(first, last, interval=f"{days}d", eager=True).to_list()
    return [(start, min(start + timedelta(days=days - 1), last)) for start in starts]


@cache
def raw_ingest() -> dg.AssetsDefinition:
    """The raw tables as one multi-asset (``raw_ingest``), made on first use."""

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
        partitions_def=daily_partitions(),
        backfill_policy=dg.BackfillPolicy.single_run(),
    )
    def raw_ingest(
        context: dg.AssetExecutionContext, config: RawIngestConfig, lake: Lake, source: RawSource, privacy: Privacy
    ):
        """Load, check and store the run's days window by window (one commit per table and window)."""
        yield from ingest_days(context, config, lake, source, privacy)

    return raw_ingest


def ingest_days(
    context: dg.AssetExecutionContext, config: RawIngestConfig, lake: Lake, source: RawSource, privacy: Privacy
):
    """Load, check and store the run's days window by window (one commit per table and window)."""
    span = context.partition_time_window
    first, last = span.start.date(), (span.end - timedelta(days=1)).date()
    tables = [t for t in CONTRACTS if raw_key(t) in context.selected_asset_keys]
    windows = _windows(first, last, config.window_days or settings().ingest_window_days)
    context.log.info(f"Loading {', '.join(tables)} for {first}..{last} in {len(windows)} window(s)")
    tallies = {table: _Tally() for table in tables}
    rejected: list = []
    batches = load_days(
        source,
        {t: landed_columns(t) for t in tables},
        windows,
        list(CONTRACTS),
        known_columns=known_columns(),
        may_empty=lambda table, day: may_empty_day(table) or not _holds_rows(lake, table, day),
    )
    for (w_first, w_last), (frames, moved) in zip(windows, batches, strict=True):
        for item in moved:
            context.log.error(f"{'Left in place' if isinstance(item, Held) else 'Moved aside'} {item}")
        rejected += moved
        for table in [t for t in tables if t in tallies]:
            if any(item.table == table and item.day is not None and first <= item.day <= last for item in rejected):
                stored = f" (days before {w_first} are stored)" if w_first > first else ""
                context.log.error(
                    f"Not storing {table} from {w_first} on: a landed file of {first}..{last} was moved aside "
                    f"or is incomplete; the stored days keep their rows{stored}."
                )
                del tallies[table]
                continue
            verdict = enforce(
                table, frames.pop(table), privacy.salt(), stored=_stored_keys(lake, table, w_first, w_last)
            )
            version = lake.replace_days(raw_table(table), verdict.good, w_first, w_last)
            lake.replace_days(
                QUARANTINE,
                verdict.quarantined if verdict.quarantined.height else pl.DataFrame(schema=QUARANTINE.schema),
                w_first,
                w_last,
                extra=f"table = '{table}'",
            )
            tallies[table].add(verdict, version)
            context.log.info(
                f"{table} {w_first}..{w_last}: {verdict.rows_in} rows in, {verdict.good.height} stored "
                f"(Delta v{version}), {verdict.quarantined.height} quarantined"
            )

    for table, tally in tallies.items():
        yield dg.MaterializeResult(
            asset_key=raw_key(table),
            metadata={
                "dagster/row_count": tally.stored,
                "rows_in": tally.rows_in,
                "rows_quarantined": tally.quarantined,
                "delta_version": tally.version,
                "partition_range": f"{first}..{last}",
                "dagster/uri": lake.uri(raw_table(table)),
                "sources": ", ".join(sorted(tally.sources)[:10]) or "none",
                "preview": dg.MetadataValue.md(markdown_table(tally.preview, 5)),
            },
        )
        yield _contract_result(table, tally, config.max_quarantine_fraction, lake)

    if rejected:
        failed = [item for item in rejected if item.day is not None and first <= item.day <= last]
        rows = {t: sum(item.rows for item in failed if item.table == t) for t in tables}
        raise dg.Failure(
            description="Landed files could not be ingested (moved aside, or left in place until complete):\n"
            + "\n".join(f"- {item}" for item in rejected),
            metadata={
                "rejected_files": [str(item.path) for item in rejected],
                "rows_in_rejected_files": {t: n for t, n in rows.items() if n},
            },
        )


def _holds_rows(lake: Lake, table: str, day: date) -> bool:
    """Whether ``day`` of the raw table already holds stored rows."""
    return lake.exists(raw_table(table)) and day in lake.days(raw_table(table), day)


def _stored_keys(lake: Lake, table: str, first, last) -> pl.LazyFrame | None:
    """Keys already stored on days outside ``first..last`` (those days are being replaced)."""
    if not lake.exists(raw_table(table)):
        return None
    return (
        lake.scan(raw_table(table))
        .filter(~pl.col("ds").is_between(first, last))
        .select(*key_columns(table), "ds", "_source_file", "_source_row")
    )


def _contract_result(table: str, tally: _Tally, max_fraction: float, lake: Lake) -> dg.AssetCheckResult:
    bad = tally.quarantined
    fraction = bad / tally.rows_in if tally.rows_in else 0.0
    summary = tally.failure_summary()
    return dg.AssetCheckResult(
        asset_key=raw_key(table),
        check_name=CONTRACT_CHECK,
        passed=bad == 0,
        severity=dg.AssetCheckSeverity.ERROR if fraction > max_fraction else dg.AssetCheckSeverity.WARN,
        description=(
            f"{bad} of {tally.rows_in} rows quarantined ({fraction:.2%}; allowed {max_fraction:.0%})"
            if bad
            else f"All {tally.rows_in} rows meet the contract"
        ),
        metadata={
            "rows_in": tally.rows_in,
            "rows_stored": tally.stored,
            "rows_quarantined": bad,
            "quarantine_fraction": fraction,
            "failure_cases": dg.MetadataValue.md(markdown_table(summary, 20) if summary.height else "none"),
            "quarantine_table": lake.uri(QUARANTINE),
        },
    )
