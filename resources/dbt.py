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


class PlatformDbtCli(DbtCliResource):
    """dbt's CLI without a dbt adapter in the calling process.

    dagster-dbt opens one in every run (parsing every macro: 3 to 5 s here) only for its
    ``fetch_row_counts`` and ``fetch_column_metadata``, which the platform does not use:
    it reads column schemas and row counts from the warehouse after the build, in one
    query (``platform_assets.dbt_models.built_columns``). Overriding the private hook is
    the only switch dagster-dbt offers; ``constraints.txt`` pins the version it was read on.
    """

    def _initialize_dbt_core_adapter(self, args):
        return None


def dbt_resource() -> DbtCliResource:
    """dbt from PATH, where this environment's comes first."""
    return PlatformDbtCli(project_dir=dbt_project)
