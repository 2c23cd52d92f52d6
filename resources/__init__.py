"""Configurable resources, with local defaults under the platform home.

Every default can be replaced by an environment variable, so production settings
(object storage, a warehouse target, a tracking server) are configuration, not code.
"""

from __future__ import annotations

import os

import dagster as dg

from resources.dbt import dbt_resource
from resources.lake import Lake
from resources.privacy import Privacy
from resources.settings import export_environment, start_date
from resources.sources import RawSource
from resources.warehouse import Warehouse


def _env_or(name: str, default: str) -> str | dg.EnvVar:
    return dg.EnvVar(name) if os.environ.get(name) else default


def build_resources() -> dict[str, object]:
    """The resources of the code location, resolved against ``PLATFORM_HOME``."""
    home = export_environment()
    return {
        "lake": Lake(root=_env_or("PLATFORM_LAKE_ROOT", str(home / "lake"))),
        "source": RawSource(
            landing_root=str(home / "landing"),
            simulator_enabled=os.environ.get("PLATFORM_SOURCE", "simulator") != "landing",
            start_date=start_date(),
            customers=int(os.environ.get("PLATFORM_SIM_CUSTOMERS", "20000")),
            days=int(os.environ.get("PLATFORM_SIM_DAYS", "180")),
        ),
        "privacy": Privacy(salt=_env_or("PLATFORM_PII_SALT", "churn-platform-local-salt")),
        "dbt": dbt_resource(),
        "warehouse": Warehouse(path=str(home / "warehouse" / "churn.duckdb")),
    }
