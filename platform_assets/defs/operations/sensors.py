"""The operations domain's sensor: runs whose worker died are marked failed."""

import dagster as dg

from platform_assets.dead_runs import fail_dead_runs
from resources.settings import settings


def dead_run_sensor() -> dg.SensorDefinition:
    @dg.sensor(
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=settings().sensor_interval_seconds,
        description="Marks runs whose worker process died as failed, so a killed run never stays STARTED.",
    )
    def dead_run_sensor(context: dg.SensorEvaluationContext) -> dg.SkipReason:
        failed = fail_dead_runs(context.instance, context.log)
        return dg.SkipReason(f"Marked failed: {', '.join(failed)}" if failed else "No run with a dead worker.")

    return dead_run_sensor
