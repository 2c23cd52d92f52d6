"""The dbt project and its CLI resource.

This module holds only the ``DbtProject`` and its resource, so that
``dagster-dbt project prepare-and-package --file resources/dbt.py`` can parse the
manifest without importing the rest of the platform.
"""

from __future__ import annotations

import os
from pathlib import Path

from dagster_dbt import DbtCliResource, DbtProject

from resources.settings import CHECKOUT, prefer_environment_bin

prefer_environment_bin()

# PLATFORM_DBT_PROJECT_DIR points the platform at another copy of the project (a
# branch being developed, or a test's temp copy); it must be set before import.
DBT_PROJECT_DIR = Path(os.environ.get("PLATFORM_DBT_PROJECT_DIR") or CHECKOUT / "dbt_project").resolve()

dbt_project = DbtProject(
    project_dir=DBT_PROJECT_DIR,
    profiles_dir=DBT_PROJECT_DIR,
    target=os.environ.get("DBT_TARGET"),
)


def dbt_resource() -> DbtCliResource:
    """dbt from PATH, where this environment's comes first."""
    return DbtCliResource(project_dir=dbt_project)
