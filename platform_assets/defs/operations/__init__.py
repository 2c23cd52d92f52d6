"""The operations domain's definitions: the daily pipeline, its schedule, and the dead-run sensor."""

import dagster as dg

from platform_assets.defs.operations.jobs import daily_pipeline, daily_schedule
from platform_assets.defs.operations.sensors import dead_run_sensor


def defs() -> dg.Definitions:
    return dg.Definitions(jobs=[daily_pipeline()], schedules=[daily_schedule()], sensors=[dead_run_sensor()])
