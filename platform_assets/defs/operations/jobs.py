"""The daily pipeline: a new day end to end, and the schedule that runs it."""

from __future__ import annotations

from functools import cache

import dagster as dg

from platform_assets.defs.datasets import dbt_key, declared, default
from platform_assets.defs.predictions.jobs import scoring_selection
from platform_assets.defs.raw.jobs import RAW
from platform_assets.partitions import daily_partitions
from resources.settings import settings


@cache
def daily_pipeline() -> dg.UnresolvedAssetJobDefinition:
    own = default()
    return dg.define_asset_job(
        "daily_pipeline",
        selection=(
            RAW
            | dg.AssetSelection.assets(
                *(dbt_key(m) for m in (own.training_model, own.scoring_model, own.outcome_model))
            ).upstream()
            | scoring_selection(own)
        )
        - dg.AssetSelection.assets(*(dbt_key(d.training_model) for d in declared())),
        partitions_def=daily_partitions(),
        description="A new day end to end: raw data and contracts, the dbt models of that day (features, outcomes; "
        "not the training sets), predictions and monitoring.",
    )


def daily_schedule() -> dg.ScheduleDefinition:
    return dg.build_schedule_from_partitioned_job(
        daily_pipeline(),
        hour_of_day=1,
        name="daily_pipeline_schedule",
        description="Moves each new day through raw data, features, predictions and monitoring.",
        default_status=dg.DefaultScheduleStatus.RUNNING
        if settings().daily_schedule
        else dg.DefaultScheduleStatus.STOPPED,
    )
