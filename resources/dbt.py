"""The dbt project and its CLI resource.

This module holds only the ``DbtProject`` and its resource, so that preparing the
manifest (``churn-platform prepare``) imports nothing else of the platform.
"""

from __future__ import annotations

from functools import cache, cached_property
from importlib.metadata import version

from dagster_dbt import DbtCliResource, DbtProject
from packaging.version import Version

from resources.settings import prefer_environment_bin, settings


@cache
def dbt_project() -> DbtProject:
    """The dbt project (``PLATFORM_DBT_PROJECT_DIR``: a branch being developed, or a test's
    copy), made on first use. dbt then runs from this Python's ``bin``."""
    prefer_environment_bin()
    project_dir = settings().dbt_project_dir.resolve()
    return DbtProject(project_dir=project_dir, profiles_dir=project_dir, target=settings().dbt_target)


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

    @cached_property
    def _cli_version(self) -> Version:
        """The installed dbt-core's version, read from its package metadata.

        dagster-dbt runs ``dbt --version`` for it once per resource instance, which is once per
        run: a whole dbt start-up (about 4 s here) before every build. dbt runs from this
        environment's ``bin`` (``dbt_project``), so the package is the executable.
        """
        return Version(version("dbt-core"))


def dbt_resource() -> DbtCliResource:
    """dbt from PATH, where this environment's comes first."""
    return PlatformDbtCli(project_dir=dbt_project())
