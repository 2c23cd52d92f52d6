"""Runs whose worker process died are marked failed, by a sensor and at every CLI start.

With the default run launcher Dagster cannot tell a killed run worker from a slow one
(docs/design.md, "Crashed runs and pools"): a SIGKILLed run stays STARTED for ever. Here a
run counts as dead only on proof, so a live run is never failed: the worker is the
process that announced the run's start (the ``pid`` of its first event), dead when no
such process exists, when it is a zombie, or when the pid now belongs to a process
started after the run began. Only a local (SQLite) instance is swept: every run it
records ran on this host, where those pids mean something. A Postgres instance shared
by several hosts needs a run launcher that checks worker health (Docker, Kubernetes)
and Dagster's own run monitoring.
"""

from __future__ import annotations

import logging

import dagster as dg
import psutil
from dagster._core.storage.runs import SqliteRunStorage

# psutil's create_time is rounded against the boot time; a worker can look up to this
# much younger than its own first event.
CLOCK_SLACK_SECONDS = 2.0


def worker_is_gone(pid: int, run_started_at: float) -> bool:
    """True when process ``pid``, which started a run at ``run_started_at``, no longer runs."""
    try:
        process = psutil.Process(pid)
        return process.status() == psutil.STATUS_ZOMBIE or process.create_time() > run_started_at + CLOCK_SLACK_SECONDS
    except psutil.NoSuchProcess:
        return True
    except psutil.AccessDenied:
        return False


def _worker(instance: dg.DagsterInstance, run: dg.DagsterRun) -> tuple[int, float] | None:
    """The run worker's pid and when it announced itself, or None before it did.

    The worker's first event is RUN_START, or for a launched run the engine event in
    which it reports its own pid ("Started process for run").
    """
    records = instance.get_records_for_run(
        run.run_id, of_type={dg.DagsterEventType.RUN_START, dg.DagsterEventType.ENGINE_EVENT}, limit=20
    ).records
    for record in records:
        event = record.event_log_entry.dagster_event
        if event is None or event.pid is None:
            continue
        announced = event.is_engine_event and event.engine_event_data.metadata.get("pid")
        if event.event_type == dg.DagsterEventType.RUN_START or (announced and announced.value == str(event.pid)):
            return event.pid, record.timestamp
    return None


def fail_dead_runs(instance: dg.DagsterInstance, log: logging.Logger | logging.LoggerAdapter) -> list[str]:
    """Mark every started run whose worker died as failed and free its concurrency slots.

    Returns the ids of the runs marked failed.
    """
    if not isinstance(instance.run_storage, SqliteRunStorage):
        return []
    started = instance.get_runs(
        filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.STARTING])
    )
    failed = []
    for run in started:
        worker = _worker(instance, run)
        if worker is None or not worker_is_gone(*worker):
            continue
        pid = worker[0]
        message = f"Run worker (pid {pid}) is gone: the process was killed or crashed; the run is marked failed."
        instance.report_run_failed(run, message=message)
        instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        log.warning(f"Run {run.run_id} of {run.job_name}: {message}")
        failed.append(run.run_id)
    return failed
