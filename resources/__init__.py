"""Configurable resources, with local defaults under the platform home.

Every default can be replaced by an environment variable, so production settings
(object storage, a warehouse target, a tracking server) are configuration, not code.
"""

from __future__ import annotations

import json
import os

import dagster as dg

from resources.dbt import dbt_resource
from resources.lake import Lake
from resources.model_registry import ModelRegistry
from resources.privacy import Privacy
from resources.settings import export_environment, start_date
from resources.sources import RawSource
from resources.warehouse import Warehouse


def _secret(name: str, default: str) -> str | dg.EnvVar:
    """An EnvVar when set, so the value is read at run time and never shown in the UI."""
    return dg.EnvVar(name) if os.environ.get(name) else default


def build_resources() -> dict[str, object]:
    """The resources of the code location, resolved against ``PLATFORM_HOME``."""
    home = export_environment()
    return {
        "lake": Lake(
            root=os.environ.get("PLATFORM_LAKE_ROOT", str(home / "lake")),
            storage_options=json.loads(os.environ.get("PLATFORM_LAKE_STORAGE_OPTIONS", "{}")),
        ),
        "source": RawSource(
            landing_root=str(home / "landing"),
            simulator_enabled=os.environ.get("PLATFORM_SOURCE", "simulator") != "landing",
            start_date=start_date(),
            customers=int(os.environ.get("PLATFORM_SIM_CUSTOMERS", "20000")),
            days=int(os.environ.get("PLATFORM_SIM_DAYS", "180")),
            # e.g. {"drift_start": "2026-07-05", "drift_session_minutes_factor": 0.7}
            **json.loads(os.environ.get("PLATFORM_SIM_DRIFT", "{}")),
        ),
        "privacy": Privacy(salt=_secret("PLATFORM_PII_SALT", "churn-platform-local-salt")),
        "dbt": dbt_resource(),
        "warehouse": Warehouse(path=str(home / "warehouse" / "churn.duckdb")),
        "registry": ModelRegistry(
            # Not MLFLOW_TRACKING_URI: MLflow sets that itself in-process once used.
            tracking_uri=os.environ.get("PLATFORM_MLFLOW_TRACKING_URI", f"sqlite:///{home / 'mlflow' / 'mlflow.db'}"),
            artifact_location=os.environ.get(
                "PLATFORM_MLFLOW_ARTIFACT_LOCATION", (home / "mlflow" / "artifacts").as_uri()
            ),
        ),
    }
