"""The datasets the dbt project declares, found once per process from the manifest.

A dataset is declared once, in dbt: ``meta.churn_platform`` on its labelled training
model names the registered model, the model scored every day and the model of matured
outcomes. Each ML and monitoring asset module has a factory that makes its assets for a
dataset, downstream of exactly the dbt models the dataset declares, so lineage is what
the assets read. The platform's own ``churn_model`` keeps unprefixed asset keys; another
dataset's keys and lake tables are prefixed with its registered model name.
"""

from __future__ import annotations

from datetime import date
from functools import cache
from pathlib import Path

import dagster as dg

from platform_assets.defs.features.translator import PlatformDbtTranslator
from platform_assets.ml.feature_spec import (
    Dataset,
    FeatureSpec,
    datasets,
    declared_snapshot_days,
    load_manifest,
    sources_read,
)
from platform_assets.partitions import daily_partitions, matured_partitions
from resources.dbt import dbt_project


def refuse_days_before_the_partitions(manifest_path: Path, found: list[Dataset], start: date) -> None:
    """Fail the definitions load when a dataset's declaration dates a snapshot before ``PLATFORM_START_DATE``.

    Predictions and monitoring are daily partitions from that date, so such a day could
    never be scored; said here, on loading, instead of at training after a full dbt build.
    What the manifest declares is checked (``feature_spec.declared_snapshot_days``).
    """
    manifest = load_manifest(manifest_path)
    for dataset in found:
        for model in dict.fromkeys([dataset.training_model, dataset.scoring_model, dataset.outcome_model]):
            early = {day: where for day, where in declared_snapshot_days(manifest, model).items() if day < start}
            if early:
                first = min(early)
                raise ValueError(
                    f"{early[first]}, before PLATFORM_START_DATE {start}, the first daily partition: "
                    f"{dataset.registered_model} could never be scored or monitored on {first}. "
                    f"Set PLATFORM_START_DATE={first} (or earlier) and reload."
                )


@cache
def declared() -> tuple[Dataset, ...]:
    """The datasets the dbt project declares, validated on first use (not on import)."""
    found = datasets(dbt_project().manifest_path)
    if not found:
        raise ValueError(
            f"the dbt project {dbt_project().project_dir} declares no dataset: add meta.churn_platform "
            "(registered_model, scoring_model, outcome_model) to a labelled model's YAML, see docs/onboarding.md"
        )
    refuse_days_before_the_partitions(dbt_project().manifest_path, found, daily_partitions().start.date())
    return tuple(found)


def default() -> Dataset:
    """The platform's own dataset: the first declared (``churn_model``, unprefixed keys)."""
    return declared()[0]


def _node(model: str) -> dict:
    nodes = load_manifest(dbt_project().manifest_path)["nodes"].values()
    return next(n for n in nodes if n["resource_type"] in ("model", "seed", "snapshot") and n["name"] == model)


def dbt_key(model: str) -> dg.AssetKey:
    """The asset key of a dbt model (or seed), as the dbt assets name it."""
    return PlatformDbtTranslator().get_asset_key(_node(model))


def spec_of(dataset: Dataset) -> FeatureSpec:
    """The dataset's column roles, read from the manifest (cached per manifest version)."""
    return dataset.spec(dbt_project().manifest_path)


def lake_versions_read(instance: dg.DagsterInstance, model: str) -> dict:
    """The lake versions the latest build of a dbt model read: only the tables its lineage reaches.

    A dbt build records the versions of every lake table at its start on each model it
    builds (``dbt_models._build``); a model's provenance keeps the sources it actually
    reads (the manifest's ``depends_on``), so a model built from a seed lists none.
    """
    event = instance.get_latest_materialization_event(dbt_key(model))
    recorded = event.asset_materialization.metadata.get("lake_versions") if event else None
    read = sources_read(load_manifest(dbt_project().manifest_path), model)
    return {table: version for table, version in (recorded.value if recorded else {}).items() if table in read}


def built_by_day(model: str) -> bool:
    """Whether a dbt model is built by snapshot day (daily partitioned), so its days pass with the clock."""
    return PlatformDbtTranslator().get_partitions_def(_node(model)) is not None


def performance_partitions(dataset: Dataset) -> dg.PartitionsDefinition:
    """The partitions of a dataset's ``model_performance``: the days its outcomes mature.

    A scoring model built by day gets a day's outcome a horizon after the day, when that
    day has become a partition: the daily partitions, which the daily jobs share. Any
    other (a seed, a one-off extract) may hold outcomes already known: its last snapshot
    plus the outcome horizon must be a partition now, so its partitions run a horizon
    past today (``partitions.matured_partitions``).
    """
    if built_by_day(dataset.scoring_model):
        return daily_partitions()
    return matured_partitions(spec_of(dataset).outcome.horizon_days)


def selection(dataset: Dataset, *names: str) -> dg.AssetSelection:
    """The named ML and monitoring assets of a dataset (``Dataset.key``) as a selection."""
    return dg.AssetSelection.assets(*(dg.AssetKey(dataset.key(n)) for n in names))


def judged_by_day(dataset: Dataset) -> bool:
    """Whether ``model_performance`` has the daily partitions, so a day's scoring run can judge it too."""
    return performance_partitions(dataset) == daily_partitions()
