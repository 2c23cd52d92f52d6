"""The code location: every asset, check, job, sensor and resource of the platform."""

import dagster as dg

from platform_assets.dbt_models import dbt_models
from platform_assets.jobs import ingest_job, scoring_job, train_job
from platform_assets.landing_sensor import landing_sensor
from platform_assets.model_assets import champion_model, churn_model
from platform_assets.predictions import churn_predictions
from platform_assets.raw import raw_tables
from resources import build_resources


def build_definitions() -> dg.Definitions:
    """The definitions with resources resolved against the current ``PLATFORM_HOME``."""
    return dg.Definitions(
        assets=[raw_tables, dbt_models, churn_model, champion_model, churn_predictions],
        jobs=[ingest_job, train_job, scoring_job],
        sensors=[landing_sensor],
        resources=build_resources(),
    )


defs = build_definitions()
