"""The serving domain's jobs and schedule: a day of online traffic, every 15 minutes once turned on."""

from __future__ import annotations

from datetime import UTC, datetime

import dagster as dg

from platform_assets.defs.serving.assets import serving_assets
from platform_assets.ml.feature_spec import Dataset
from platform_assets.partitions import serving_days


def monitoring_job(dataset: Dataset) -> dg.UnresolvedAssetJobDefinition:
    _, *monitors = serving_assets(dataset)
    return dg.define_asset_job(
        dataset.name("monitor_serving"),
        selection=dg.AssetSelection.assets(*monitors),
        partitions_def=serving_days(),
        description=f"A day of `{dataset.registered_model}` online traffic: the serving log, its drift and the "
        "rollout report (whose check the rollout sensor acts on).",
    )


def monitoring_schedule(job: dg.UnresolvedAssetJobDefinition) -> dg.ScheduleDefinition:
    @dg.schedule(
        name=f"{job.name}_schedule",
        job=job,
        cron_schedule="*/15 * * * *",
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description="Every 15 minutes, today's serving log, online drift and rollout report (off by default: turn "
        "it on where the API serves traffic).",
    )
    def every_quarter_hour(context: dg.ScheduleEvaluationContext):
        today = (context.scheduled_execution_time or datetime.now(UTC)).date().isoformat()
        return dg.RunRequest(run_key=f"{job.name}:{context.scheduled_execution_time}", partition_key=today)

    return every_quarter_hour
