"""Settings from the environment, and where the platform keeps its local state.

One home directory, set by ``PLATFORM_HOME``, holds all local state.

Everything a run writes (the lake, the warehouse, the MLflow store, the Dagster
instance, the landing zone) lives below it, so a test gets its own in a temp dir and
``rm -rf`` of the home resets the platform.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[1]
DEFAULT_HOME = CHECKOUT / ".platform"

DAGSTER_YAML = """\
# Written by churn-platform for the local instance; replace it for production
# (Postgres storage, a run launcher) or point DAGSTER_HOME elsewhere.
telemetry:
  enabled: false
concurrency:
  pools:
    # One step at a time per pool: dbt holds the DuckDB warehouse's single write lock.
    default_limit: 1
"""


def start_date() -> str:
    """First day of the daily partitions (and of the simulated business): ``PLATFORM_START_DATE``."""
    return os.environ.get("PLATFORM_START_DATE", "2026-01-01")


def platform_home() -> Path:
    """The home directory: ``$PLATFORM_HOME``, or ``.platform/`` in the checkout."""
    return Path(os.environ.get("PLATFORM_HOME") or DEFAULT_HOME).expanduser().resolve()


def export_environment() -> Path:
    """Resolve the home and export it, with the settings child processes must share.

    dbt runs as a subprocess and finds the warehouse and the lake through
    ``PLATFORM_HOME`` in its environment (``profiles.yml``, ``sources.yml``), so the
    resolved, absolute path is exported here once rather than recomputed in two languages.
    MLflow's telemetry would try the network; it is off unless the user set it.
    """
    home = platform_home()
    os.environ["PLATFORM_HOME"] = str(home)
    prefer_environment_bin()
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
    return home


def prefer_environment_bin() -> None:
    """Put this Python's ``bin`` first on PATH, so every dbt call (dagster-dbt's preparer
    included) uses the dbt installed beside it, even when the virtualenv is not activated."""
    bin_dir = str(Path(sys.executable).parent)
    if os.environ.get("PATH", "").split(os.pathsep)[0] != bin_dir:
        os.environ["PATH"] = os.pathsep.join([bin_dir, os.environ.get("PATH", "")])


def ensure_dagster_home(home: Path | None = None) -> Path:
    """Point ``DAGSTER_HOME`` below the platform home (unless set) and write its dagster.yaml."""
    home = home or platform_home()
    dagster_home = Path(os.environ.get("DAGSTER_HOME") or home / "dagster").resolve()
    dagster_home.mkdir(parents=True, exist_ok=True)
    config = dagster_home / "dagster.yaml"
    if not config.exists():
        config.write_text(DAGSTER_YAML)
    os.environ["DAGSTER_HOME"] = str(dagster_home)
    return dagster_home
