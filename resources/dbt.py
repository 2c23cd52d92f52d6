"""The dbt project and its CLI resource.

This module holds only the ``DbtProject`` and its resource, so that preparing the
manifest (``churn-platform prepare``) imports nothing else of the platform.
"""

from __future__ import annotations

from functools import cache

from dagster_dbt import DbtCliResource, DbtProject

from resources.settings import DBT_TARGET_PATH, prefer_environment_bin, settings


@cache
def dbt_project() -> DbtProject:
    """The dbt project (``PLATFORM_DBT_PROJECT_DIR``: a branch being developed, or a test's
    copy), made on first use. dbt then runs from this Python's ``bin``."""
    prefer_environment_bin()
    project_dir = settings().dbt_project_dir.resolve()
    return DbtProject(
        project_dir=project_dir, profiles_dir=project_dir, target=settings().dbt_target, target_path=DBT_TARGET_PATH
    )


class PlatformDbtCli(DbtCliResource):
    """dbt's CLI without a dbt adapter in the calling process.

    dagster-dbt opens one in every run (parsing every macro: 3 to 5 s here) only for its
    ``fetch_row_counts`` and ``fetch_column_metadata``, which the platform does not use:
    it reads column schemas and row counts from the warehouse after the build, in one
    query (``platform_assets.defs.features.assets.built_columns``). Overriding the private hook is
    the only switch dagster-dbt offers; ``constraints.txt`` pins the version it was read on.
    """

    def _initialize_dbt_core_adapter(self, args):
        return None


def dbt_resource() -> DbtCliResource:
    """dbt from PATH, where this environment's comes first."""
    return PlatformDbtCli(project_dir=dbt_project())
