"""The production services a team moves to, started here for real, and the demo graph on them.

PostgreSQL (Debian's server) holds the Dagster instance and the MLflow tracking store; a
moto S3 server holds the Delta lake and MLflow's artifacts. The platform reaches them by
configuration alone: ``deploy/dagster.yaml`` and environment variables, as
docs/production.md describes. Both servers listen on free ports of 127.0.0.1 and are
stopped by their own PID.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import boto3
import dagster as dg
import duckdb
import polars as pl
import psycopg2
import pytest
from botocore.exceptions import EndpointConnectionError

from tests.conftest import day
from tests.test_daemon import _stop
from tests.test_ui import _free_port

pytestmark = pytest.mark.world

CHECKOUT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DAYS = 150
KEYS = {"AWS_ACCESS_KEY_ID": "churn-test", "AWS_SECRET_ACCESS_KEY": "churn-test-secret"}
REGION = "us-east-1"
RAW_TABLES = ("customers", "sessions", "support_tickets", "promotions", "plan_changes", "cancellations")


def _postgres_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    if not found:
        message = "PostgreSQL is not installed (Debian: apt-get install postgresql); .ci/run installs it"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found[-1].parent


def _as_server_owner(command: list[str]) -> list[str]:
    """initdb and the server refuse to run as root: as root, run them as the postgres user."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


def _stop_pid(pid: int) -> None:
    """Stop a server that is not our child by its PID: SIGINT (a fast shutdown), then SIGKILL."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGINT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            os.kill(pid, 0)
            time.sleep(0.2)
        os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def postgres():
    """A fresh PostgreSQL cluster; yields its port. Its folder is outside pytest's private tmp,
    which the postgres user cannot enter."""
    bin_dir = _postgres_bin()
    data = Path(tempfile.mkdtemp(prefix="churn-pg-"))
    if os.geteuid() == 0:
        shutil.chown(data, "postgres", "postgres")
    port = _free_port()
    run = {"check": True, "capture_output": True, "text": True, "timeout": 120}
    subprocess.run(
        _as_server_owner(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
            ]
        ),
        **run,
    )
    options = f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={data}"
    subprocess.run(
        _as_server_owner(
            [str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(data / "server.log"), "-w", "-o", options, "start"]
        ),
        **run,
    )
    pid = int((data / "postmaster.pid").read_text().split()[0])
    try:
        yield port
    finally:
        _stop_pid(pid)
        shutil.rmtree(data, ignore_errors=True)


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """moto's S3 server with the buckets ``lake`` and ``mlflow``; yields its endpoint URL."""
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log = (tmp_path_factory.mktemp("moto") / "moto.log").open("w")
    server = subprocess.Popen([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=log)
    client = boto3.client("s3", endpoint_url=endpoint, region_name=REGION, **_boto_keys())
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                client.list_buckets()
                break
            except EndpointConnectionError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.2)
        for bucket in ("lake", "mlflow"):
            client.create_bucket(Bucket=bucket)
        yield endpoint
    finally:
        _stop(server)
        log.close()


def _boto_keys() -> dict[str, str]:
    return {"aws_access_key_id": KEYS["AWS_ACCESS_KEY_ID"], "aws_secret_access_key": KEYS["AWS_SECRET_ACCESS_KEY"]}


def _sql(port: int, database: str, query: str) -> list[tuple]:
    with contextlib.closing(
        psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname=database)
    ) as connection:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(query)
            return cursor.fetchall() if cursor.description else []


def _environment(home: Path, pg_port: int, endpoint: str) -> dict[str, str]:
    """Everything that points the platform at the services, and nothing inherited that could."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("PLATFORM_", "DAGSTER_", "MLFLOW_", "AWS_"))}
    # No keys here: dbt renders these options into its target/ artifacts. delta-rs reads the
    # keys from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, as MLflow's boto3 does.
    lake_options = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ALLOW_HTTP": "true",
        "AWS_REGION": REGION,
        # Commits are PUT-if-absent: a concurrent writer of the same version gets 412 and retries.
        "aws_conditional_put": "etag",
    }
    return {
        **inherited,
        "PLATFORM_HOME": str(home),
        "DAGSTER_HOME": str(home / "dagster"),
        "DAGSTER_PG_USERNAME": "postgres",
        "DAGSTER_PG_PASSWORD": "",
        "DAGSTER_PG_HOST": "127.0.0.1",
        "DAGSTER_PG_PORT": str(pg_port),
        "DAGSTER_PG_DB": "dagster",
        "PLATFORM_LAKE_ROOT": "s3://lake/churn",
        "PLATFORM_LAKE_STORAGE_OPTIONS": json.dumps(lake_options),
        "PLATFORM_MLFLOW_TRACKING_URI": f"postgresql+psycopg2://postgres@127.0.0.1:{pg_port}/mlflow",
        "PLATFORM_MLFLOW_ARTIFACT_LOCATION": "s3://mlflow/churn",
        "MLFLOW_S3_ENDPOINT_URL": endpoint,
        "AWS_DEFAULT_REGION": REGION,
        **KEYS,
        "MLFLOW_DISABLE_TELEMETRY": "true",
        # As docs/production.md advises: batched event inserts, fewer and larger lake commits.
        "DAGSTER_EVENT_BATCH_SIZE": "100",
        "PLATFORM_INGEST_WINDOW_DAYS": "30",
        "PLATFORM_SIM_CUSTOMERS": "1000",
        "PLATFORM_SIM_DAYS": str(DAYS),
    }


def _delta(uri: str, env: dict[str, str]) -> pl.DataFrame:
    return pl.read_delta(uri, storage_options={**json.loads(env["PLATFORM_LAKE_STORAGE_OPTIONS"]), **KEYS})


@pytest.mark.slow
def test_the_demo_graph_runs_on_postgres_and_s3_with_concurrent_partition_runs(tmp_path, postgres, s3, monkeypatch):
    for database in ("dagster", "mlflow"):
        _sql(postgres, "postgres", f"create database {database}")
    home = tmp_path / "home"
    (home / "dagster").mkdir(parents=True)
    shutil.copy(CHECKOUT / "deploy" / "dagster.yaml", home / "dagster" / "dagster.yaml")
    env = _environment(home, postgres, s3)

    demo = subprocess.run(
        [str(BIN / "churn-platform"), "demo"], cwd=CHECKOUT, env=env, capture_output=True, text=True, timeout=900
    )
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    assert "Lake (Delta):        s3://lake/churn" in demo.stdout
    assert "0 failed" in demo.stdout and "v1 promoted" in demo.stdout

    # Two new days ingested and two earlier days scored, all four runs at once. Each run
    # executes in one process (PLATFORM_RUN_EXECUTOR's default, in_process).
    new_days, scored_days = [day(DAYS), day(DAYS + 1)], [day(DAYS - 3), day(DAYS - 2)]
    launches = [("ingest_raw", d) for d in new_days] + [("score_day", d) for d in scored_days]
    processes = []
    for job, partition in launches:
        log = (tmp_path / f"{job}-{partition}.log").open("w")
        command = [str(BIN / "dagster"), "job", "execute", "-m", "platform_assets.definitions", "-j", job]
        command += ["--tags", json.dumps({"dagster/partition": partition.isoformat()})]
        processes.append((subprocess.Popen(command, cwd=CHECKOUT, env=env, stdout=log, stderr=log), log))
    for process, log in processes:
        returncode = process.wait(timeout=300)
        log.close()
        assert returncode == 0, Path(log.name).read_text()[-3000:]

    # Every run is in Postgres, succeeded, and each concurrent pair really overlapped.
    runs = _sql(postgres, "dagster", "select pipeline_name, status, partition, start_time, end_time from runs")
    assert sorted((job, status) for job, status, *_ in runs) == sorted(
        [("ingest_raw", "SUCCESS")] * 3 + [("train_model", "SUCCESS")] + [("score_day", "SUCCESS")] * 3
    )
    timing = {partition: (start, end) for _, _, partition, start, end in runs if partition}
    for pair in (new_days, scored_days):
        (start_a, end_a), (start_b, end_b) = (timing[d.isoformat()] for d in pair)
        assert max(start_a, start_b) < min(end_a, end_b), f"runs of {pair} did not overlap: {timing}"

    # Nothing lost, nothing doubled: each raw Delta table on S3 holds exactly the rows the
    # three ingest runs reported storing (the demo's range and the two concurrent days).
    monkeypatch.setenv("DAGSTER_HOME", env["DAGSTER_HOME"])
    for name in ("DAGSTER_PG_USERNAME", "DAGSTER_PG_PASSWORD", "DAGSTER_PG_HOST", "DAGSTER_PG_PORT", "DAGSTER_PG_DB"):
        monkeypatch.setenv(name, env[name])
    with dg.DagsterInstance.get() as instance:
        for table in RAW_TABLES:
            stored = _delta(f"s3://lake/churn/raw/{table}", env)
            per_run = {}  # a range run records every day of its range with the range's count
            for record in instance.fetch_materializations(dg.AssetKey(f"raw_{table}"), limit=1000).records:
                per_run[record.run_id] = record.asset_materialization.metadata["dagster/row_count"].value
            assert len(per_run) == 3 and stored.height == sum(per_run.values()), (table, dict(per_run), stored.height)
        sessions = _delta("s3://lake/churn/raw/sessions", env)
        for partition in new_days:
            reported = instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=dg.AssetKey("raw_sessions"), asset_partitions=[partition.isoformat()]),
                limit=1,
            ).records[0]
            rows = sessions.filter(pl.col("ds") == partition).height
            assert rows > 0 and rows == reported.asset_materialization.metadata["dagster/row_count"].value

    # dbt read the S3 lake (there is no local one) and built features up to the last day.
    assert not (home / "lake").exists() and not (home / "mlflow").exists()
    with duckdb.connect(str(home / "warehouse" / "churn.duckdb"), read_only=True) as warehouse:
        last_snapshot, features = warehouse.sql(
            "select max(snapshot_date), count(*) from customer_features"
        ).fetchall()[0]
    assert last_snapshot == day(DAYS - 1) and features > 0

    # Predictions of the three scored days, by the champion, in Delta on S3.
    predictions = _delta("s3://lake/churn/predictions/churn_predictions", env)
    per_day = dict(predictions.group_by("ds").len().iter_rows())
    assert set(per_day) == {*scored_days, day(DAYS - 1)} and min(per_day.values()) > 0
    assert predictions["model_version"].unique().to_list() == ["1"]

    # MLflow: runs and the registered version with its aliases in Postgres, artifacts on S3.
    assert _sql(postgres, "mlflow", "select name, version from model_versions") == [("churn_model", 1)]
    aliases = dict(_sql(postgres, "mlflow", "select alias, version from registered_model_aliases"))
    assert aliases == {"champion": 1, "candidate": 1}
    artifact_uris = [uri for (uri,) in _sql(postgres, "mlflow", "select artifact_uri from runs")]
    assert artifact_uris and all(uri.startswith("s3://mlflow/churn/") for uri in artifact_uris)
    client = boto3.client("s3", endpoint_url=s3, region_name=REGION, **_boto_keys())
    keys = [
        o["Key"] for page in client.get_paginator("list_objects_v2").paginate(Bucket="mlflow") for o in page["Contents"]
    ]
    for artifact in ("MLmodel", "reference_profile.json", "model_card.md", "feature_importance.json"):
        assert any(key.endswith(f"/{artifact}") for key in keys), (artifact, keys[:20])
