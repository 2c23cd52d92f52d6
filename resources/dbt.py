"""The dbt project and its CLI resource.

This module holds only the ``DbtProject`` and its resource, so that preparing the
manifest (``churn-platform prepare``) imports nothing else of the platform.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from functools import cache, cached_property
from importlib.metadata import version
from pathlib import Path

from dagster_dbt import DbtCliResource, DbtProject
from dagster_dbt.core.dbt_cli_invocation import PARTIAL_PARSE_FILE_NAME, DbtCliInvocation
from dagster_dbt.dbt_project import DagsterDbtProjectPreparer
from packaging.version import Version

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


# What the manifest is parsed from: models, macros, tests, seeds, their YAML and docs blocks
# (the Makefile's DBT_FILES names the same files for `make setup`).
PARSED_SUFFIXES = frozenset({".sql", ".yml", ".csv", ".md"})


def manifest_is_current(project: DbtProject) -> bool:
    """Whether the manifest is newer than every file outside ``target/`` it is parsed from.

    ``target/`` is not walked: runs by hand and ``dbt docs`` leave thousands of compiled files there.
    """
    if not project.manifest_path.exists():
        return False
    built = project.manifest_path.stat().st_mtime
    target = project.manifest_path.parent
    for folder, subfolders, files in os.walk(project.project_dir):
        subfolders[:] = [name for name in subfolders if Path(folder, name) != target]
        for name in files:
            if Path(name).suffix in PARSED_SUFFIXES and Path(folder, name).stat().st_mtime > built:
                return False
    return True


class PlatformPreparer(DagsterDbtProjectPreparer):
    """dagster-dbt's preparer (``dbt parse`` into the project's manifest), its parse run by the platform's
    dbt: dagster-dbt's own runs ``dbt --version`` before it, a whole dbt start-up (1.8 s here), and does
    not take ``churn-dbt``. ``_prepare_manifest`` is the hook; ``constraints.txt`` pins the version."""

    def _prepare_manifest(self, project: DbtProject) -> None:
        cli = PlatformDbtCli(project_dir=project, dbt_executable=dbt_executable())
        cli.cli(self._prepare_project_cli_args, target_path=project.target_path).wait()
        self._invalidate_seeds_in_partial_parse(project)


def prepare(project: DbtProject) -> None:
    """Parse ``project`` into its manifest (``churn-platform prepare``, ``make setup``)."""
    PlatformPreparer().prepare(project)


def prepare_if_changed() -> None:
    """Parse the project when a file it is parsed from is newer than its manifest, or there is none.

    The definitions call it in development (``dg``, ``dagster dev``) in place of dagster-dbt's
    ``prepare_if_dev``, which parses on every load there, changed or not: a ``dbt --version`` and
    a ``dbt parse`` in each process that loads them, twice per ``dg launch`` (its own process and
    the run's), about 25 of its 41 s CPU here. An edited model is still picked up by the next
    load, as with ``make setup``'s rule.
    """
    project = dbt_project()
    if not manifest_is_current(project):
        prepare(project)


class PlatformDbtCli(DbtCliResource):
    """dbt's CLI without a dbt adapter in the calling process, its runs kept under the home.

    dagster-dbt opens one in every run (parsing every macro: 3 to 5 s here) only for its
    ``fetch_row_counts`` and ``fetch_column_metadata``, which the platform does not use:
    it reads column schemas and row counts from the warehouse after the build, in one
    query (``platform_assets.defs.features.assets.built_columns``). Overriding the private hooks is
    the only switch dagster-dbt offers; ``constraints.txt`` pins the version they were read on.
    """

    def cli(self, args, *, environment: Mapping[str, str] | None = None, **kwargs) -> DbtCliInvocation:
        """dbt's CLI, its process given ``environment`` on top of this one's.

        The platform passes a build's days this way, not as ``--vars``: dbt parses the whole
        project again whenever its vars change (about 4 s here, every run), while the models
        read these variables only when they run (``build_day`` in ``macros/snapshot_days.sql``).
        dagster-dbt copies ``os.environ`` when it starts dbt and takes no environment of its
        own, so the variables are set around that start, and only there.
        """
        with _environment(environment or {}):
            return super().cli(args, **kwargs)

    def _get_unique_target_path(self, *, context) -> Path:
        """A folder for this run under the home's ``dbt/target`` (dagster-dbt's is in the project, which
        would hold every home's runs), with the home's latest parse copied in.

        dbt reuses a saved parse only when its profile is unchanged, and the profile names the
        home's warehouse, so the project's parse (``make setup``'s) fits only the home it was made
        for: each run starts from the last one this home saved, and only its first parses whole.
        """
        path = settings().dbt_target_path / super()._get_unique_target_path(context=context).name
        saved = max(settings().dbt_target_path.glob(f"*/{PARTIAL_PARSE_FILE_NAME}"), key=_modified, default=None)
        if saved is not None:
            path.mkdir(parents=True, exist_ok=True)
            with suppress(FileNotFoundError):  # its run folder removed meanwhile: dbt parses whole
                shutil.copy(saved, path / PARTIAL_PARSE_FILE_NAME)
        return path

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


def _modified(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:  # a run folder removed meanwhile
        return 0.0


@contextmanager
def _environment(variables: Mapping[str, str]) -> Iterator[None]:
    before = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def dbt_resource() -> DbtCliResource:
    """dbt from PATH, where this environment's comes first; with ``PLATFORM_DBT_PRELOAD``, started by
    ``churn-dbt`` from a preloaded process (``resources.dbt_forkserver``)."""
    return PlatformDbtCli(project_dir=dbt_project(), dbt_executable=dbt_executable())


def dbt_executable() -> str:
    return "churn-dbt" if settings().dbt_preload else "dbt"
