"""Shared fixtures: every test runs against real components in its own temp home."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import pytest
from filelock import FileLock

from platform_assets.runs import QUIET, range_tags
from resources.settings import settings

SMALL = {"PLATFORM_SIM_CUSTOMERS": "1500", "PLATFORM_SIM_DAYS": "100"}
FIRST_DAY = settings().start_date


def day(n: int) -> date:
    """The n-th day of the simulated business (0 is the first)."""
    return FIRST_DAY + timedelta(days=n)


MEMORY_DISK = Path("/dev/shm")


def pytest_configure(config):
    """Put test homes in memory when the machine has room; parse the dbt project before any
    test module imports the definitions (which load the manifest).

    Every home holds SQLite (Dagster, MLflow), DuckDB and Delta files. On a RAM-backed file
    system their syncs cost nothing, which halves SQLite's cost per Dagster event. Set
    PYTEST_DEBUG_TEMPROOT (or --basetemp) to choose another place.
    """
    roomy = MEMORY_DISK.is_dir() and shutil.disk_usage(MEMORY_DISK).free >= 8 * 2**30
    if roomy and config.option.basetemp is None:
        os.environ.setdefault("PYTEST_DEBUG_TEMPROOT", str(MEMORY_DISK))
    os.environ.setdefault("PLATFORM_HOME", tempfile.mkdtemp(prefix="churn-parse-"))
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("PLATFORM_LANDING_QUIET_SECONDS", "0")
    # Ingest windows of 30 days, not the default 7: the worlds here (at most 5,000 customers, about
    # 2,000 rows a day) fit a month in a few MB, and each window costs a commit, a contract pass and
    # a read of the stored keys per table, 20 s of a 150-day world of 3,000 customers (142 s -> 100 s for
    # the monitoring and decisions modules side by side). Windows themselves: test_raw_assets (days 3).
    os.environ.setdefault("PLATFORM_INGEST_WINDOW_DAYS", "30")
    # The scoring API's children (snapshot layout, precompute) at the tests' own priority: at nice 10 beside
    # the other test worker, a precompute of 1,400 customers waited 26 to 31 s.
    os.environ.setdefault("PLATFORM_SERVING_CHILD_NICE", "0")
    # dbt from a preloaded process: the suite starts about 50 dbt commands, each 2 s of imports less.
    # test_production_services (which passes no PLATFORM_ variable on) keeps dbt's own executable tested.
    os.environ.setdefault("PLATFORM_DBT_PRELOAD", "true")
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return  # the controller parsed it before starting the workers
    from resources.dbt import prepare_if_changed

    prepare_if_changed()  # `make setup` (which `make test` runs first) leaves it current


def pytest_unconfigure(config):
    """Stop the preloaded dbt server the run started (by its pid), rather than leave it to its idle timeout."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        from resources import dbt_forkserver

        dbt_forkserver.stop()


# Modules in the order their measured minutes call for, longest first (--durations=0 of a whole
# run on 2026-12-07, summed per module); the rest follow by marker. With two workers each taking the next
# module as it frees up, the long ones overlap and the short ones fill the end. test_ui builds the demo's
# home that test_extending and test_cli read (marked slow: they come after all of these).
LONGEST_FIRST = (
    "test_serving",
    "test_production_services",
    "test_daemon",
    "test_event_log_dataset",
    "test_onboarding",
    "test_model_lifecycle",
    "test_ui",
    "test_incremental_features",
    "test_crash_recovery",
    "test_rollout",
    "test_dbt_features",
    "test_monitoring_assets",
    "test_decisions",
    "test_drift_detection",
    "test_campaign_statistics",
    "test_any_dataset",
    "test_bad_inputs",
)


def pytest_collection_modifyitems(config, items):
    """Start the longest modules first. Each module runs on one worker (``--dist loadfile``,
    its fixtures built once), in this order (``--no-loadscope-reorder``: xdist would otherwise
    order modules by their number of tests), so the last minutes are not one long module on
    one core while the other idles."""

    def rank(item) -> tuple[int, int]:
        name = item.module.__name__.rsplit(".", 1)[-1]
        if name in LONGEST_FIRST:
            return (0, LONGEST_FIRST.index(name))
        return (1 if item.get_closest_marker("slow") else 2 if item.get_closest_marker("world") else 3, 0)

    items.sort(key=rank)


def use_home(patch: pytest.MonkeyPatch, home: Path, settings: dict[str, str]) -> Path:
    """Point the platform at a fresh home, with the simulator settings given (the rest default)."""
    patch.setenv("PLATFORM_HOME", str(home))
    patch.delenv("DAGSTER_HOME", raising=False)
    for name, value in settings.items():
        patch.setenv(name, value)
    return home


@contextmanager
def module_home(tmp_path_factory: pytest.TempPathFactory, name: str, settings: dict[str, str]):
    """use_home for a module-scoped fixture, undone when the fixture ends."""
    with pytest.MonkeyPatch.context() as patch:
        yield use_home(patch, tmp_path_factory.mktemp(name) / "home", settings)


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A fresh PLATFORM_HOME with a small simulated business."""
    return use_home(monkeypatch, tmp_path / "home", SMALL)


@pytest.fixture
def resources(home):
    from resources import build_resources

    return build_resources()


def memory_instance() -> dg.DagsterInstance:
    """Dagster's in-memory instance, for runs executed in this process.

    Backfill-sized runs write an event per partition and asset (3,600 for 150 days of
    features): about 23 ms each on SQLite, which commits and syncs every one, and 3 ms in
    memory. Tests whose runs cross processes (CLI, daemon, webserver) keep SQLite homes.
    """
    return dg.DagsterInstance.ephemeral()


@pytest.fixture
def instance():
    with memory_instance() as instance:
        yield instance


def ingest(defs: dg.Definitions, instance: dg.DagsterInstance, first: date, last: date):
    """Load days first..last of every raw table in one run, as a backfill does."""
    result = defs.resolve_job_def("ingest_raw").execute_in_process(
        instance=instance, tags=range_tags(first, last), run_config=QUIET
    )
    assert result.success
    return result


def build_features(defs: dg.Definitions, instance: dg.DagsterInstance, first: date, last: date):
    """dbt build through Dagster: features of days first..last in one run, then the training set, with their tests."""
    from platform_assets.defs.features.assets import materialize_features

    return materialize_features(defs.resources, instance, tags=range_tags(first, last), whole_history=True)


CHECKOUT = Path(__file__).resolve().parents[1]
DEMO_WORLD = {"PLATFORM_SIM_CUSTOMERS": "1500", "PLATFORM_SIM_DAYS": "150"}

# The feature docs/extending.md adds to a copy of the project, in SQL and YAML alone. The demo's home is
# built from that copy, so one build serves the README's command (test_cli, test_ui) and the walkthrough
# (test_extending checks the feature reaches the catalog, the model, its reasons and drift).
FEATURE = "tickets_per_session_30d"
FEATURE_SQL = "    coalesce(t.tickets_30d, 0) / (coalesce(u.sessions_30d, 0) + 1.0) as tickets_per_session_30d,\n"
FEATURE_YAML = f"""      - name: {FEATURE}
        description: "Support tickets of the last 30 days per session of the last 30 days."
        config:
          meta:
            role: feature
"""


def add_feature(project: Path) -> None:
    """Steps 1 and 2 of docs/extending.md's walkthrough: SQL and YAML, nothing else."""
    sql = project / "models" / "marts" / "customer_features.sql"
    text = sql.read_text()
    anchor = "    coalesce(t.tickets_30d, 0) as tickets_30d,\n"
    assert anchor in text
    sql.write_text(text.replace(anchor, anchor + FEATURE_SQL))
    yml = project / "models" / "marts" / "_marts.yml"
    text = yml.read_text()
    anchor = "      - name: unresolved_tickets_30d\n"
    assert anchor in text
    yml.write_text(text.replace(anchor, FEATURE_YAML + anchor, 1))


def demo_env(home: Path) -> dict[str, str]:
    """This process's environment for a command on the demo's home (its own PLATFORM_HOME, no DAGSTER_HOME,
    the extended project beside the home)."""
    env = {k: v for k, v in os.environ.items() if k not in ("DAGSTER_HOME", "PLATFORM_HOME")}
    project = {"PLATFORM_DBT_PROJECT_DIR": str(home.parent / "dbt_project")}
    return {**env, "PLATFORM_HOME": str(home), **DEMO_WORLD, **project}


@pytest.fixture(scope="session")
def demo_home(tmp_path_factory, worker_id) -> tuple[Path, subprocess.CompletedProcess]:
    """`make demo` as a user runs it, once per test run in a fresh home, on the project extended as
    docs/extending.md does (step 3: ``churn-platform prepare``, then the demo): the CLI test reads its
    output, the UI test browses it, the extending test follows its feature. Under xdist the workers share
    it (the first builds it under a file lock, the other waits), as pytest-xdist documents for session
    fixtures."""
    root = tmp_path_factory.getbasetemp()
    shared = root if worker_id == "master" else root.parent  # the run's folder, above the workers'
    home, record = shared / "demo" / "home", shared / "demo" / "make-demo.json"
    with FileLock(str(shared / "demo.lock")):
        if not record.exists():
            project = home.parent / "dbt_project"
            shutil.copytree(CHECKOUT / "dbt_project", project, ignore=shutil.ignore_patterns("target", "logs"))
            add_feature(project)
            cli = str(Path(sys.executable).parent / "churn-platform")
            for command in ([cli, "prepare"], ["make", "demo"]):
                done = subprocess.run(
                    command, cwd=CHECKOUT, env=demo_env(home), capture_output=True, text=True, timeout=900
                )
                if done.returncode != 0:
                    break
            record.write_text(json.dumps({"returncode": done.returncode, "stdout": done.stdout, "stderr": done.stderr}))
    done = subprocess.CompletedProcess(["make", "demo"], **json.loads(record.read_text()))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return home, done
