"""The daily reports of a dataset as assets: one factory for the drift, performance and impact reports.

Each report is a plain generator over a ``ReportDay`` (what it reads on its partition
day) that yields its materialization and its checks; the factory adds what every report
shares: the key under the dataset's prefix, the monitoring group, the lake table it
writes in the catalog, non-blocking checks on the report's own partitions.
"""

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date

import dagster as dg
import polars as pl

from platform_assets.defs.datasets import spec_of
from platform_assets.metadata import layer, stored_in
from platform_assets.ml.feature_spec import Dataset, FeatureSpec
from platform_assets.tables import PREDICTIONS, Table, scored_day
from resources.lake import Lake
from resources.model_registry import ModelRegistry
from resources.warehouse import Warehouse


@dataclass(frozen=True)
class ReportDay:
    """What a daily report of a dataset reads: its partition day, the dataset and its stores."""

    day: date
    dataset: Dataset
    spec: FeatureSpec
    warehouse: Warehouse
    registry: ModelRegistry  # the dataset's registered model
    lake: Lake

    def table(self, table: Table) -> str:
        """Where this dataset keeps ``table``."""
        return self.dataset.lake_table(table)

    def predictions(self) -> pl.DataFrame:
        """The day's predictions; a report cannot go on without them."""
        return scored_day(self.lake, self.table(PREDICTIONS), self.day)


def report_asset(
    dataset: Dataset,
    name: str,
    table: Table,
    config_type: type[dg.Config],
    report: Callable[[dg.AssetExecutionContext, dg.Config, ReportDay], Iterator],
    *,
    description: str,
    deps: Iterable,
    partitions_def: dg.PartitionsDefinition,
    kinds: set[str],
    checks: Sequence[tuple[str, str]] = (),
) -> dg.AssetsDefinition:
    """The asset ``name`` of ``dataset``: ``report`` run on its partition day, with ``checks`` (name, description)."""
    key = dataset.key(name)

    @dg.asset(
        key=key,
        partitions_def=partitions_def,
        deps=list(deps),
        **layer("monitoring"),
        kinds=kinds,
        description=description,
        metadata=stored_in(table, dataset),
        check_specs=[
            dg.AssetCheckSpec(check, asset=key, description=text, blocking=False, partitions_def=partitions_def)
            for check, text in checks
        ],
    )
    def daily_report(
        context: dg.AssetExecutionContext,
        config: config_type,
        warehouse: Warehouse,
        registry: ModelRegistry,
        lake: Lake,
    ):
        on = ReportDay(
            date.fromisoformat(context.partition_key),
            dataset,
            spec_of(dataset),
            warehouse,
            registry.named(dataset.registered_model),
            lake,
        )
        yield from report(context, config, on)

    return daily_report
