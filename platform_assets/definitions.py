"""The code location: every asset, check, job, sensor, schedule and resource of the platform."""

import dagster as dg

from platform_assets.automation import daily_schedule, retrain_on_failed_checks, retrain_policy
from platform_assets.dbt_models import dbt_models
from platform_assets.dead_runs import dead_run_sensor
from platform_assets.jobs import daily_pipeline, ingest_job, retrain_job, scoring_job, train_job
from platform_assets.landing_sensor import landing_sensor
from platform_assets.model_assets import champion_model, churn_model
from platform_assets.monitoring.drift_reports import feature_drift_report, prediction_drift_report
from platform_assets.monitoring.performance_reports import business_impact, model_performance
from platform_assets.predictions import churn_predictions
from platform_assets.raw import raw_tables
from resources import build_resources


def build_definitions() -> dg.Definitions:
    """The definitions with resources resolved against the current ``PLATFORM_HOME``."""
    return dg.Definitions(
        assets=[
            raw_tables,
            dbt_models,
            churn_model,
            champion_model,
            churn_predictions,
            feature_drift_report,
            prediction_drift_report,
            model_performance,
            business_impact,
        ],
        jobs=[ingest_job, train_job, scoring_job, daily_pipeline, retrain_job],
        sensors=[landing_sensor, retrain_on_failed_checks, dead_run_sensor],
        schedules=[daily_schedule],
        resources={**build_resources(), "policy": retrain_policy()},
    )


defs = build_definitions()
