"""Recovery without a person: killed runs, concurrent first runs, concurrent Delta writers, lock waits.

Every process here is real (Dagster runs, dbt, Delta writers) and is killed by its own
PID or process group.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import date
from pathlib import Path

import dagster as dg
import polars as pl
import psutil
import pytest

from platform_assets.defs.operations.sensors import dead_run_sensor
from resources.lake import Lake
from resources.locks import LockTimeout, hold
from resources.settings import ensure_dagster_home
from tests.conftest import day

pytestmark = pytest.mark.world

CHECKOUT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "platform_assets.cli"]
TINY = {"PLATFORM_SIM_CUSTOMERS": "300", "PLATFORM_SIM_DAYS": "40"}


def _environment(home: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        **TINY,
        "PLATFORM_HOME": str(home),
        "DAGSTER_HOME": str(home / "dagster"),
        "PYTHONPATH": str(CHECKOUT),
        **extra,
    }


def _holding(lock: Path, purpose: str) -> subprocess.Popen:
    """Another process that holds ``lock`` until killed; returns once it holds it."""
    script = textwrap.dedent(
        f"""
        import logging, time
        from pathlib import Path
        from resources.locks import hold
        with hold(Path({str(lock)!r}), {purpose!r}, 10, logging.getLogger()):
            print("held", flush=True)
            time.sleep(600)
        """
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script], cwd=CHECKOUT, stdout=subprocess.PIPE, text=True, env=_environment(lock.parent)
    )
    assert process.stdout.readline().strip() == "held"
    return process


def _kill(process: subprocess.Popen) -> None:
    process.kill()
    process.wait(timeout=30)


def test_a_lock_wait_names_the_holder_and_gives_up_with_a_clear_error(tmp_path, caplog):
    lock = tmp_path / "warehouse" / ".write.lock"
    holder = _holding(lock, "run abc, dbt build")
    try:
        with (
            caplog.at_level(logging.INFO),
            pytest.raises(LockTimeout) as raised,
            hold(lock, "run def, dbt build", 1.0, logging.getLogger("test")),
        ):
            pass
        message = str(raised.value)
        assert f"Gave up after 1 s waiting for the lock {lock} (run def, dbt build)" in message
        assert f"held by pid {holder.pid} on " in message and "run abc, dbt build" in message
        assert "PLATFORM_LOCK_TIMEOUT_SECONDS" in message
        assert f"Waiting up to 1 s for the lock {lock}, held by pid {holder.pid}" in caplog.text
    finally:
        _kill(holder)
    # The kernel dropped the lock with its SIGKILLed holder: no wait, no cleanup by anyone.
    started = time.monotonic()
    with hold(lock, "after the kill", 5.0, logging.getLogger("test")):
        assert f"pid {os.getpid()} " in lock.read_text()
    assert time.monotonic() - started < 0.5
    assert lock.read_text() == ""


def test_a_dbt_build_waits_for_the_warehouse_lock_then_fails_clearly(home, monkeypatch):
    from platform_assets.defs.features.assets import by_day_models
    from resources import build_resources

    monkeypatch.setenv("PLATFORM_LOCK_TIMEOUT_SECONDS", "2")
    resources = build_resources()
    lock = Path(resources["warehouse"].write_lock_path)
    holder = _holding(lock, "run other, dbt build")
    try:
        with dg.instance_for_test() as instance:
            result = dg.materialize(
                [by_day_models()],
                instance=instance,
                resources=resources,
                partition_key=day(0).isoformat(),
                raise_on_error=False,
            )
            assert not result.success
            failure = next(e for e in result.all_events if e.is_step_failure).event_specific_data.error.cause
            assert failure.cls_name == "LockTimeout"
            assert f"Gave up after 2 s waiting for the lock {lock}" in failure.message
            assert f"held by pid {holder.pid}" in failure.message
            logs = [r.user_message for r in instance.all_logs(result.run_id)]
            assert any(m.startswith(f"Waiting up to 2 s for the lock {lock}, held by pid {holder.pid}") for m in logs)
    finally:
        _kill(holder)


def test_a_cli_command_waiting_on_a_lock_says_so_and_gives_up(tmp_path):
    home = tmp_path / "home"
    holder = _holding(home / "dagster" / ".instance.lock", "another churn-platform init")
    try:
        done = subprocess.run(
            [*CLI, "init"],
            cwd=CHECKOUT,
            env=_environment(home, PLATFORM_LOCK_TIMEOUT_SECONDS="2"),
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        _kill(holder)
    assert done.returncode != 0
    assert "INFO Waiting up to 2 s for the lock" in done.stderr
    assert f"held by pid {holder.pid}" in done.stderr
    assert "Gave up after 2 s waiting for the lock" in done.stderr.splitlines()[-1]


SLEEPY_RUN = """
import time
import dagster as dg


@dg.asset(pool="slow_pool")
def sleepy():
    time.sleep(600)

with dg.DagsterInstance.get() as instance:
    dg.materialize([sleepy], instance=instance)
"""


def test_the_sensor_fails_a_killed_run_frees_its_slot_and_spares_a_live_run(tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    dagster_home = ensure_dagster_home(tmp_path)
    (dagster_home / "dagster.yaml").write_text(
        "telemetry:\n  enabled: false\nconcurrency:\n  default_op_concurrency_limit: 1\n"
    )
    worker = subprocess.Popen([sys.executable, "-c", SLEEPY_RUN], env={**os.environ, "DAGSTER_HOME": str(dagster_home)})
    try:
        with dg.DagsterInstance.get() as instance:
            run = _wait_for_step_start(instance, worker)
            assert instance.event_log_storage.get_concurrency_info("slow_pool").claimed_slots

            # Alive: the sensor leaves it alone.
            assert "No run with a dead worker" in _evaluate(dead_run_sensor(), instance)
            assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.STARTED

            # SIGKILLed, and not reaped yet: a zombie counts as dead.
            os.kill(worker.pid, signal.SIGKILL)
            psutil.wait_procs([psutil.Process(worker.pid)], timeout=0.5)
            assert f"Marked failed: {run.run_id}" in _evaluate(dead_run_sensor(), instance)
            assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE
            assert not instance.event_log_storage.get_concurrency_info("slow_pool").claimed_slots
            failure = instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.RUN_FAILURE).records
            assert f"Run worker (pid {worker.pid}) is gone" in failure[0].event_log_entry.dagster_event.message
            # Once failed, it is not failed again.
            assert "No run with a dead worker" in _evaluate(dead_run_sensor(), instance)
    finally:
        _kill(worker)


def _wait_for_step_start(instance: dg.DagsterInstance, worker: subprocess.Popen) -> dg.DagsterRun:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert worker.poll() is None, "the run ended before it could be killed"
        runs = instance.get_runs()
        if runs and instance.get_records_for_run(runs[0].run_id, of_type=dg.DagsterEventType.STEP_START).records:
            return runs[0]
        time.sleep(0.2)
    raise AssertionError("the run never started its step")


def _evaluate(sensor: dg.SensorDefinition, instance: dg.DagsterInstance) -> str:
    result = sensor.evaluate_tick(dg.build_sensor_context(instance=instance))
    return result.skip_message or ""


def _write_days(root: str, days: list[str], repeats: int, barrier) -> None:
    """One writer process: each day of ``days`` replaced ``repeats`` times with the same rows."""
    lake = Lake(root=root)
    barrier.wait()
    for _ in range(repeats):
        for value in days:
            first = date.fromisoformat(value)
            lake.replace_days("raw/events", _rows(first), first, first)


def _rows(first: date) -> pl.DataFrame:
    return pl.DataFrame({"id": range(500), "ds": [first] * 500})


def test_concurrent_writers_of_one_day_both_succeed_and_nothing_is_duplicated_or_lost(tmp_path):
    root = str(tmp_path / "lake")
    Lake(root=root).create("raw/events", {"id": pl.Int64, "ds": pl.Date})
    shared, own_a, own_b = day(0).isoformat(), day(1).isoformat(), day(2).isoformat()
    spawn = multiprocessing.get_context("spawn")  # delta-rs's runtime does not survive fork
    barrier = spawn.Barrier(2)
    writers = [
        spawn.Process(target=_write_days, args=(root, [shared, own_a], 10, barrier)),
        spawn.Process(target=_write_days, args=(root, [shared, own_b], 10, barrier)),
    ]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(timeout=120)
    assert [w.exitcode for w in writers] == [0, 0]

    stored = Lake(root=root).scan("raw/events").collect()
    for value in (shared, own_a, own_b):
        rows = stored.filter(pl.col("ds") == date.fromisoformat(value))
        assert rows.height == 500 and rows["id"].n_unique() == 500, value
    assert stored.height == 1500
    assert Lake(root=root).version("raw/events") == 40  # the create and all 40 writes committed, none lost


@pytest.mark.slow
def test_concurrent_first_runs_on_a_fresh_home_all_succeed(tmp_path):
    home = tmp_path / "home"
    env = _environment(home)
    runs = [
        subprocess.Popen(
            [*CLI, "run", "ingest_raw", "--first", day(n % 2).isoformat()],
            cwd=CHECKOUT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for n in range(4)
    ]
    outputs = [run.communicate(timeout=240)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0, 0, 0], "\n\n".join(o[-3000:] for o in outputs)
    with dg.DagsterInstance.from_config(str(home / "dagster")) as instance:
        assert len(instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.SUCCESS]))) == 4
    sessions = Lake(root=str(home / "lake")).scan("raw/sessions").collect()
    assert sessions.group_by("ds", "session_id").len()["len"].max() == 1  # each day stored once


# The daily-partitioned dbt models (staging, windows, features): one dbt build over every day.
DBT_SELECTION = "+key:customer_features and not group:raw"


@pytest.mark.slow
def test_a_run_killed_during_dbt_is_failed_and_the_next_run_completes_on_its_own(tmp_path):
    home = tmp_path / "home"
    env = _environment(home, PLATFORM_LOCK_TIMEOUT_SECONDS="60")
    last = day(int(TINY["PLATFORM_SIM_DAYS"]) - 1)
    ingest = [*CLI, "run", "ingest_raw", "--first", day(0).isoformat(), "--last", last.isoformat()]
    subprocess.run(ingest, cwd=CHECKOUT, env=env, check=True, capture_output=True, timeout=180)
    build = [sys.executable, "-m", "dagster", "asset", "materialize", "-m", "platform_assets.definitions"]
    build += ["--select", DBT_SELECTION, "--partition-range", f"{day(0).isoformat()}...{last.isoformat()}"]
    lock = home / "warehouse" / ".write.lock"

    killed = subprocess.Popen(build, cwd=CHECKOUT, env=env, start_new_session=True, stdout=subprocess.DEVNULL)
    try:
        _wait_for_dbt(killed, lock)
        os.killpg(killed.pid, signal.SIGKILL)
        killed_at = time.time()
        killed.wait(timeout=30)
    finally:
        for process in psutil.process_iter():
            if _in_group(process, killed.pid):
                process.kill()

    # The next run, started as a scheduler would, with nobody freeing anything.
    next_run = subprocess.run(build, cwd=CHECKOUT, env=env, capture_output=True, text=True, timeout=150)
    assert next_run.returncode == 0, next_run.stderr[-3000:]

    # Any churn-platform command finds the dead run first and marks it failed.
    init = subprocess.run([*CLI, "init"], cwd=CHECKOUT, env=env, capture_output=True, text=True, timeout=120)
    assert init.returncode == 0, init.stderr
    with dg.DagsterInstance.from_config(str(home / "dagster")) as instance:
        materializations = [r for r in instance.get_runs() if r.job_name == "__ASSET_JOB"]
        statuses = sorted(r.status.value for r in materializations)
        assert statuses == ["FAILURE", "SUCCESS"], statuses
        dead = next(r for r in materializations if r.status == dg.DagsterRunStatus.FAILURE)
        assert f"Run {dead.run_id} of __ASSET_JOB: Run worker (pid {killed.pid}) is gone" in init.stderr
        alive = next(r for r in materializations if r.status == dg.DagsterRunStatus.SUCCESS)
        started = instance.get_records_for_run(alive.run_id, of_type=dg.DagsterEventType.RUN_START).records[0]
        ended = instance.get_records_for_run(alive.run_id, of_type=dg.DagsterEventType.RUN_SUCCESS).records[0]
    print(
        f"\nkill -> next run's start: {started.timestamp - killed_at:.1f} s; "
        f"kill -> next run's success: {ended.timestamp - killed_at:.1f} s"
    )
    assert lock.read_text() == ""


def _wait_for_dbt(run: subprocess.Popen, lock: Path) -> None:
    """Until dbt runs under ``run`` while the run holds the warehouse lock."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert run.poll() is None, "the run ended before dbt started"
        children = psutil.Process(run.pid).children(recursive=True)
        dbt_running = any("dbt" in " ".join(_cmdline(c)[:2]) for c in children)
        if dbt_running and lock.exists() and "dbt build" in lock.read_text():
            time.sleep(1.0)
            return
        time.sleep(0.2)
    raise AssertionError("dbt never started")


def _cmdline(process: psutil.Process) -> list[str]:
    try:
        return process.cmdline()
    except psutil.Error:
        return []


def _in_group(process: psutil.Process, group: int) -> bool:
    try:
        return os.getpgid(process.pid) == group
    except (ProcessLookupError, psutil.Error):
        return False
