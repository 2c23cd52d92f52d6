"""The code location: every asset, check, job, sensor, schedule and resource of the platform.

The ML and monitoring assets, jobs and retraining sensor are made once per dataset the
dbt project declares (``platform_assets.datasets``).
"""

import dagster as dg

from platform_assets.automation import OTHER_SENSORS, daily_schedule, retrain_on_failed_checks, retrain_policy
from platform_assets.datasets import DATASETS
from platform_assets.dbt_models import dbt_models, dbt_whole_history
from platform_assets.dead_runs import dead_run_sensor
from platform_assets.decisions.assets import DECISION_ASSETS, decide_day
from platform_assets.jobs import OTHER_JOBS, daily_pipeline, ingest_job, retrain_job, score_job, train_job
from platform_assets.landing_sensor import landing_sensor
from platform_assets.ml.feature_spec import Dataset
from platform_assets.model_assets import model_assets
from platform_assets.monitoring.drift_reports import drift_assets
from platform_assets.monitoring.performance_reports import performance_assets
from platform_assets.predictions import predictions_asset
from platform_assets.raw import raw_tables
from platform_assets.serving.automation import SERVING_ASSETS, SERVING_JOBS, SERVING_SCHEDULES, SERVING_SENSORS
from resources import build_resources
from resources.settings import settings


def dataset_assets(dataset: Dataset) -> list[dg.AssetsDefinition]:
    """The ML and monitoring assets of one declared dataset."""
    return [*model_assets(dataset), predictions_asset(dataset), *drift_assets(dataset), *performance_assets(dataset)]


def build_definitions() -> dg.Definitions:
    """The definitions with resources resolved against the current ``PLATFORM_HOME``."""
    return dg.Definitions(
        assets=[
            raw_tables,
            dbt_models,
            dbt_whole_history,
            *(a for d in DATASETS for a in dataset_assets(d)),
            *SERVING_ASSETS,
            *DECISION_ASSETS,
        ],
        jobs=[ingest_job, train_job, score_job, daily_pipeline, retrain_job, decide_day, *OTHER_JOBS, *SERVING_JOBS],
        sensors=[landing_sensor, retrain_on_failed_checks, dead_run_sensor, *OTHER_SENSORS, *SERVING_SENSORS],
        schedules=[daily_schedule, *SERVING_SCHEDULES],
        resources={**build_resources(), "policy": retrain_policy()},
        executor=run_executor(),
    )


def run_executor() -> dg.ExecutorDefinition:
    """The executor of every job, launched runs included (``PLATFORM_RUN_EXECUTOR``)."""
    return dg.in_process_executor if settings().run_executor == "in_process" else dg.multiprocess_executor


defs = build_definitions()
