"""The serving group's jobs, schedule and rollout sensor, made once per declared dataset."""

from __future__ import annotations

from datetime import UTC, datetime

import dagster as dg

from platform_assets.datasets import DATASETS
from platform_assets.ml.feature_spec import Dataset
from platform_assets.serving.assets import serving_assets, serving_days
from platform_assets.serving.rollout import rollout_job, rollout_sensor


def monitoring_job(dataset: Dataset) -> dg.UnresolvedAssetJobDefinition:
    _, *monitors = serving_assets(dataset)
    name = f"monitor_serving_{dataset.registered_model}" if dataset.prefix else "monitor_serving"
    return dg.define_asset_job(
        name,
        selection=dg.AssetSelection.assets(*monitors),
        partitions_def=serving_days,
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


SERVING_ASSETS = [a for d in DATASETS for a in serving_assets(d)]
_MONITORING = [monitoring_job(d) for d in DATASETS]
_ROLLOUT = [rollout_job(d) for d in DATASETS]
SERVING_JOBS = [*_MONITORING, *_ROLLOUT]
SERVING_SCHEDULES = [monitoring_schedule(j) for j in _MONITORING]
SERVING_SENSORS = [rollout_sensor(d, j) for d, j in zip(DATASETS, _ROLLOUT, strict=True)]
