"""The dbt project and its CLI resource.

This module holds only the ``DbtProject`` and its resource, so that
``dagster-dbt project prepare-and-package --file resources/dbt.py`` can parse the
manifest without importing the rest of the platform.
"""

from __future__ import annotations

from dagster_dbt import DbtCliResource, DbtProject

from resources.settings import prefer_environment_bin, settings

prefer_environment_bin()

# PLATFORM_DBT_PROJECT_DIR points the platform at another copy of the project (a
# branch being developed, or a test's temp copy); it must be set before import.
_settings = settings()
DBT_PROJECT_DIR = _settings.dbt_project_dir.resolve()

dbt_project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR, target=_settings.dbt_target)


def dbt_resource() -> DbtCliResource:
    """dbt from PATH, where this environment's comes first."""
    return DbtCliResource(project_dir=dbt_project)
