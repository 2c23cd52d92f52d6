"""The raw domain's definitions: the raw tables behind their contracts, their job and the landing sensor."""

import dagster as dg

from platform_assets.defs.raw.assets import raw_ingest
from platform_assets.defs.raw.jobs import ingest_job
from platform_assets.defs.raw.sensors import landing_sensor


def defs() -> dg.Definitions:
    return dg.Definitions(assets=[raw_ingest()], jobs=[ingest_job()], sensors=[landing_sensor()])
