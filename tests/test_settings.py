"""The typed settings: one object, read from the environment, failing early on bad values."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pydantic
import pytest

from resources.settings import export_environment, settings


def test_defaults_put_all_state_under_the_home(monkeypatch, tmp_path):
    monkeypatch.setenv("PLATFORM_HOME", str(tmp_path / "home"))
    for name in ("PLATFORM_LAKE_ROOT", "PLATFORM_MLFLOW_TRACKING_URI", "PLATFORM_MLFLOW_ARTIFACT_LOCATION"):
        monkeypatch.delenv(name, raising=False)
    current = settings()
    home = (tmp_path / "home").resolve()
    assert Path(current.lake) == home / "lake"
    assert current.tracking_uri == f"sqlite:///{home / 'mlflow' / 'mlflow.db'}"
    assert current.artifact_location == (home / "mlflow" / "artifacts").as_uri()
    assert current.warehouse_path == home / "warehouse" / "churn.duckdb"
    assert current.contacts_path == home / "exports" / "contacts" == Path(current.simulator.contacts_dir)
    assert current.review_inbox_path == home / "review_inbox"


def test_settings_are_read_once_per_environment_and_cannot_be_changed_by_a_caller(monkeypatch, tmp_path):
    """Loading the definitions asks for the settings dozens of times; each read validates every field."""
    monkeypatch.setenv("PLATFORM_HOME", str(tmp_path / "a"))
    first = settings()
    assert settings() is first
    with pytest.raises(pydantic.ValidationError, match="frozen"):
        first.sim_customers = 1
    monkeypatch.setenv("PLATFORM_HOME", str(tmp_path / "b"))
    assert settings().resolved_home == (tmp_path / "b").resolve()
    monkeypatch.setenv("PLATFORM_HOME", str(tmp_path / "a"))
    assert settings().resolved_home == (tmp_path / "a").resolve()


def test_environment_values_are_parsed_into_types(monkeypatch):
    monkeypatch.setenv("PLATFORM_SIM_DRIFT", json.dumps({"start_date": "2026-07-01", "session_minutes_factor": 0.7}))
    monkeypatch.setenv("PLATFORM_LAKE_STORAGE_OPTIONS", json.dumps({"AWS_ALLOW_HTTP": "true"}))
    monkeypatch.setenv("PLATFORM_DAILY_SCHEDULE", "on")
    monkeypatch.setenv("PLATFORM_START_DATE", "2025-03-01")
    monkeypatch.setenv("PLATFORM_HOME", "")  # empty means unset: the default home
    current = settings()
    assert current.simulator.drift.start.isoformat() == "2026-07-01"
    assert current.simulator.drift.session_minutes_factor == 0.7
    assert current.simulator.start.isoformat() == "2025-03-01"
    assert current.lake_storage_options == {"AWS_ALLOW_HTTP": "true"}
    assert current.daily_schedule is True
    assert current.resolved_home.name == ".platform"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PLATFORM_SIM_DAYS", "ninety"),
        ("PLATFORM_SOURCE", "ftp"),
        ("PLATFORM_SIM_DRIFT", '{"session_minutes_factor": 0.7}'),  # no start_date
        ("PLATFORM_START_DATE", "01/02/2026"),
        ("PLATFORM_DUCKDB_MEMORY_LIMIT", "lots"),
    ],
)
def test_a_malformed_value_fails_at_start_naming_the_setting(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(pydantic.ValidationError) as raised:
        settings()
    assert name.removeprefix("PLATFORM_").lower() in str(raised.value)


def test_dbt_builds_run_with_the_duckdb_memory_limit_threads_and_spill_directory_of_the_settings(monkeypatch, tmp_path):
    monkeypatch.setenv("PLATFORM_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PLATFORM_DUCKDB_MEMORY_LIMIT", "1GB")
    monkeypatch.setenv("PLATFORM_DUCKDB_THREADS", "1")
    monkeypatch.delenv("PLATFORM_DUCKDB_TEMP_DIRECTORY", raising=False)
    home = export_environment()
    (home / "warehouse").mkdir(parents=True)
    query = "select current_setting('memory_limit') as m, current_setting('threads') as t, current_setting('temp_directory') as d"
    project = settings().dbt_project_dir
    shown = subprocess.run(
        [Path(sys.executable).parent / "dbt", "show", "--inline", query, "--output", "json", "--log-format", "json"],
        cwd=project,
        env={**os.environ, "DBT_PROFILES_DIR": str(project), "DBT_TARGET_PATH": str(tmp_path / "target")},
        capture_output=True,
        text=True,
        check=True,
    )
    preview = next(json.loads(line)["data"]["preview"] for line in shown.stdout.splitlines() if '"preview"' in line)
    assert json.loads(preview) == [{"m": "953.6 MiB", "t": 1, "d": str(home / "warehouse" / "spill")}]


@pytest.mark.parametrize(("value", "executor"), [(None, "in_process"), ("multiprocess", "multiprocess")])
def test_every_job_runs_on_the_executor_of_the_settings(monkeypatch, value, executor):
    """Launched runs (daemon, `dagster asset materialize`) take the Definitions' executor."""
    from platform_assets.definitions import build_definitions

    if value is None:
        monkeypatch.delenv("PLATFORM_RUN_EXECUTOR", raising=False)
    else:
        monkeypatch.setenv("PLATFORM_RUN_EXECUTOR", value)
    defs = build_definitions()
    for job in ("ingest_raw", "train_model", "daily_pipeline", "retrain_model", "__ASSET_JOB"):
        assert defs.resolve_job_def(job).executor_def.name == executor, job
