"""The code location: every asset, check, job, sensor and resource of the platform."""

import dagster as dg

from platform_assets.dbt_models import dbt_models
from platform_assets.jobs import churn_pipeline, ingest_job
from platform_assets.landing_sensor import landing_sensor
from platform_assets.raw import raw_tables
from resources import build_resources


def build_definitions() -> dg.Definitions:
    """The definitions with resources resolved against the current ``PLATFORM_HOME``."""
    return dg.Definitions(
        assets=[raw_tables, dbt_models],
        jobs=[ingest_job, churn_pipeline],
        sensors=[landing_sensor],
        resources=build_resources(),
    )


defs = build_definitions()
