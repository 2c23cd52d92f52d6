"""The serving domain's definitions, per declared dataset: the online store's snapshot, the
serving log, online drift and the rollout report, their job and schedule, and the rollout sensor
with the job it launches. The scoring API itself is ``platform_assets.serving``."""

import dagster as dg

from platform_assets.defs.datasets import declared
from platform_assets.defs.serving.assets import serving_assets
from platform_assets.defs.serving.jobs import monitoring_job, monitoring_schedule
from platform_assets.defs.serving.rollout import rollout_job, rollout_sensor


def defs() -> dg.Definitions:
    monitoring = [monitoring_job(d) for d in declared()]
    rollout = [rollout_job(d) for d in declared()]
    return dg.Definitions(
        assets=[a for d in declared() for a in serving_assets(d)],
        jobs=[*monitoring, *rollout],
        schedules=[monitoring_schedule(j) for j in monitoring],
        sensors=[rollout_sensor(d, j) for d, j in zip(declared(), rollout, strict=True)],
    )
