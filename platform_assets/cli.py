"""``churn-platform``: the commands README.md and the Makefile use.

The environment (``PLATFORM_HOME``, ``DAGSTER_HOME``, simulator size) is settled before
the definitions are imported, because resources resolve their paths at import.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import date, timedelta
from urllib.parse import urlsplit

from platform_assets.runs import QUIET, log_level, range_tags
from resources.settings import LOG, ensure_dagster_home, export_environment, log_to_stderr, platform_home, settings

LOG_LEVEL = log_level("INFO")


def _prepare(_: argparse.Namespace | None = None) -> None:
    """Parse the dbt project into target/manifest.json, which the definitions load."""
    export_environment()
    from resources.dbt import dbt_project, prepare

    prepare(dbt_project())
    print(f"dbt manifest ready: {dbt_project().manifest_path}")


def _init(_: argparse.Namespace | None = None) -> None:
    """Create the home: the Dagster instance, the warehouse folder, empty lake tables.

    Every command starts here, so runs whose worker died are marked failed before
    anything new runs.
    """
    home = export_environment()
    dagster_home = ensure_dagster_home(home)
    (home / "warehouse").mkdir(parents=True, exist_ok=True)
    import dagster as dg

    from platform_assets.dead_runs import fail_dead_runs
    from platform_assets.defs.raw.assets import create_missing_tables
    from resources import build_resources

    with dg.DagsterInstance.get() as instance:
        fail_dead_runs(instance, LOG)
    created = create_missing_tables(build_resources()["lake"])
    print(
        f"PLATFORM_HOME={home}\nDAGSTER_HOME={dagster_home}" + (f"\nCreated empty tables: {created}" if created else "")
    )


def _settle_environment(args: argparse.Namespace) -> None:
    os.environ["PLATFORM_SIM_CUSTOMERS"] = str(args.customers)
    os.environ["PLATFORM_SIM_DAYS"] = str(args.days)
    _ready()


def _ready() -> None:
    """The home initialized and the dbt manifest parsed: what every command that runs jobs needs."""
    _init()
    from resources.dbt import dbt_project

    if not dbt_project().manifest_path.exists():
        _prepare()


def _run_job(args: argparse.Namespace) -> None:
    """Run one job now, in this process: for a day, a range of days, or (unpartitioned) once."""
    _ready()
    import dagster as dg

    days = (args.first, args.last or args.first) if args.first else None
    with dg.DagsterInstance.get() as instance:
        result = _run(args.job, instance, days, {"platform/trigger": "cli"})
    print(f"Run {result.run_id} of {args.job} succeeded.")


def _run(
    job_name: str,
    instance,
    days: tuple[date, date] | None = None,
    tags: dict[str, str] | None = None,
    run_config: dict = LOG_LEVEL,
):
    """Run a job of the code location in this process, recorded in the Dagster instance."""
    from platform_assets.definitions import defs

    job = defs.resolve_job_def(job_name)
    partition_key, partition_tags = None, {}
    if days and days[0] == days[1]:
        partition_key = days[0].isoformat()  # a day's checks are then recorded for that partition
    elif days:
        partition_tags = range_tags(*days)
    result = job.execute_in_process(
        instance=instance,
        run_config=run_config,
        partition_key=partition_key,
        tags={**partition_tags, **(tags or {})},
        raise_on_error=False,
    )
    if not result.success:
        failures = [e.event_specific_data.error.message for e in result.all_events if e.is_step_failure]
        sys.exit(f"Run {result.run_id} of {job_name} failed:\n" + "\n".join(failures))
    return result


def _demo(args: argparse.Namespace) -> None:
    """Build the whole graph on the simulated business, in three runs.

    ``ingest_raw`` loads the whole history through the contracts in one run,
    ``train_model`` builds the dbt features of every day (one run over the range) and a
    promoted model, and ``score_day`` scores the last day.
    """
    _settle_environment(args)
    import dagster as dg

    first = settings().start_date
    last = first + timedelta(days=args.days - 1)
    started = time.monotonic()
    with dg.DagsterInstance.get() as instance:
        print(f"Building {first}..{last} for about {args.customers} customers in {platform_home()}")
        tags = {"platform/trigger": "demo"}
        results = [
            _run("ingest_raw", instance, (first, last), tags),
            _run("train_model", instance, (first, last), tags),
            _run("score_day", instance, (last, last), tags),
        ]
        _summarize(results, time.monotonic() - started)


def _summarize(results, seconds: float) -> None:
    import dagster as dg

    from platform_assets.definitions import defs

    home = platform_home()
    lake, registry = defs.resources["lake"], defs.resources["registry"]
    graph = defs.resolve_asset_graph()
    print(f"\nDone in {seconds:.0f} s (runs {', '.join(r.run_id for r in results)}).\n")
    latest = {
        e.asset_key: e.event_specific_data.materialization
        for r in results
        for e in r.get_asset_materialization_events()
    }
    print(f"{'asset':<24}{'rows':>10}  stored at")
    for key in sorted(latest, key=lambda k: k.to_user_string()):
        metadata = latest[key].metadata
        rows = metadata.get("dagster/row_count")
        where = metadata.get("dagster/uri") or graph.get(key).metadata.get("dagster/table_name")
        print(f"{key.to_user_string():<24}{rows.value if rows else '':>10}  {getattr(where, 'value', where) or ''}")
    checks = [
        e.event_specific_data
        for r in results
        for e in r.all_events
        if e.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION
    ]
    failed = [c for c in checks if not c.passed and c.severity == dg.AssetCheckSeverity.ERROR]
    warned = [c for c in checks if not c.passed and c.severity == dg.AssetCheckSeverity.WARN]
    print(f"\n{len(checks)} checks evaluated, {len(failed)} failed, {len(warned)} warned.")
    for check in failed + warned:
        label = "FAILED" if check in failed else "WARN  "
        print(f"  {label} {check.asset_key.to_user_string()}:{check.check_name}: {check.description}")
    model = {k: v.value for k, v in latest[dg.AssetKey("candidate_model")].metadata.items()}
    gate = {k: v.value for k, v in latest[dg.AssetKey("champion_model")].metadata.items()}
    scored = {k: v.value for k, v in latest[dg.AssetKey("churn_predictions")].metadata.items()}
    print(
        f"\nModel:               churn_model v{model['model_version']}, validation ROC AUC "
        f"{model['validation_roc_auc']:.3f}, lift in the top decile {model['validation_lift_top_decile']:.1f}\n"
        f"Promotion gate:      {gate['action']}; {gate['reason']}\n"
        f"Predictions:         {scored['dagster/row_count']} customers scored by v{scored['model_version']}, "
        f"{scored['high_risk']} high risk, {scored['flagged_for_review']} flagged for review\n"
        f"\nLake (Delta):        {lake.root}\n"
        f"Warehouse (DuckDB):  {home / 'warehouse' / 'churn.duckdb'}\n"
        f"MLflow tracking:     {_without_password(registry.tracking_uri)}"
        f"{'  (browse with `make mlflow`)' if registry.tracking_uri.startswith('sqlite:') else ''}\n"
        f"Dagster instance:    {settings().dagster_home}\n"
        f"Assets:              {len(graph.get_all_asset_keys())} in one graph; browse them with `make dev` "
        "at http://127.0.0.1:3000"
    )


def _without_password(uri: str) -> str:
    """A URI safe to print: a database password in it is masked."""
    password = urlsplit(uri).password
    return uri.replace(f":{password}@", ":***@") if password else uri


def _drift_demo(args: argparse.Namespace) -> None:
    """Watch the platform notice drift and retrain itself, day by day.

    History is built as in ``demo``; then each following day runs ``daily_pipeline``
    (raw, features, predictions, monitoring), and after each day the retraining sensor
    is evaluated exactly as the Dagster daemon evaluates it, its requests run at once.
    No scoring API runs here to give a retrained version live traffic, so unless told
    otherwise a version that passes the gate is promoted on it (``promote_on_gate``).
    """
    os.environ.setdefault("PLATFORM_ROLLOUT_MODE", "promote_on_gate")
    first = settings().start_date
    last_history = first + timedelta(days=args.days - 1)
    drift_day = last_history + timedelta(days=args.quiet_days + 1)
    drift = {"start_date": drift_day.isoformat(), "session_minutes_factor": args.minutes_factor}
    os.environ["PLATFORM_SIM_DRIFT"] = json.dumps(drift)
    _settle_environment(args)
    import dagster as dg

    from platform_assets.definitions import defs

    retrain_on_failed_checks = defs.resolve_sensor_def("retrain_on_failed_checks")

    registry = defs.resources["registry"]
    if registry.version("champion") is not None:
        sys.exit(f"drift-demo needs a fresh PLATFORM_HOME; {platform_home()} already has a model")
    started = time.monotonic()
    log_path = platform_home() / "drift-demo.log"
    print(
        f"History {first}..{last_history}, {args.customers} customers; session time x{args.minutes_factor} from {drift_day}"
    )
    print(f"(dbt and run logs go to {log_path})", flush=True)
    with dg.DagsterInstance.get() as instance, log_path.open("a") as log:

        def run(job_name: str, days=None, tags=None):
            with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
                return _run(job_name, instance, days, tags or {"platform/trigger": "drift-demo"}, QUIET)

        run("ingest_raw", (first, last_history))
        run("train_model", (first, last_history))
        run("score_day", (last_history, last_history))
        print(f"Model v{registry.version('champion').version} trained and promoted; now day by day:\n", flush=True)
        cursor = None
        for n in range(1, args.quiet_days + args.drift_days + 1):
            day = last_history + timedelta(days=n)
            run("daily_pipeline", (day, day))
            print(_day_line(instance, day, drift_day), flush=True)
            context = dg.build_sensor_context(
                instance=instance, cursor=cursor, resources={"registry": registry, "policy": defs.resources["policy"]}
            )
            with contextlib.redirect_stderr(log):
                requests = list(retrain_on_failed_checks(context))
            cursor = context.cursor
            for request in requests:
                print(
                    f"    -> retraining: {request.tags['platform/check']} failed {request.tags['platform/failing_days']}"
                )
                result = run("retrain_model", tags=request.tags)
                gate = _latest_metadata(instance, dg.AssetKey("champion_model"))
                print(f"    -> retrained in run {result.run_id[:8]}: {gate['reason']}", flush=True)
    _drift_summary(registry, time.monotonic() - started)


def _latest_metadata(instance, key) -> dict:
    event = instance.get_latest_materialization_event(key)
    return {k: v.value for k, v in event.asset_materialization.metadata.items()}


def _decision_scope(model: str | None):
    """The decisions of ``model`` (default: the platform's own dataset), or exit saying which models make some."""
    from platform_assets.decisions.scope import DecisionScope
    from platform_assets.defs.datasets import declared

    deciding = [d.registered_model for d in declared() if d.value_column]
    chosen = next((d for d in declared() if d.registered_model == (model or declared()[0].registered_model)), None)
    if chosen is None or chosen.value_column is None:
        sys.exit(f"{model or declared()[0].registered_model} makes no decisions; the models that do: {deciding}")
    return DecisionScope.of(chosen)


def _day_line(instance, day: date, drift_day: date) -> str:
    import dagster as dg

    from platform_assets.defs.datasets import default
    from platform_assets.defs.ml.sensors import watched_checks
    from platform_assets.ml.retraining import read_evaluations

    marks = []
    for check in watched_checks(default()):
        evaluation = next((e for e in read_evaluations(instance, check, 20) if e.day == day), None)
        if evaluation is not None:
            marks.append(f"{check.name} {evaluation.status.upper()}")
    drift = _latest_metadata(instance, dg.AssetKey("feature_drift_report"))
    detail = f"{drift['drifted_features']} drifted features, max PSI {drift['max_psi']:.3f}"
    phase = "drift" if day >= drift_day else "quiet"
    return f"{day} ({phase}): " + ", ".join(marks) + f"; {detail}"


def _drift_summary(registry, seconds: float) -> None:
    client = registry.activate()
    found = client.search_model_versions(f"name = '{registry.model_name}'")
    versions = [client.get_model_version(registry.model_name, v) for v in sorted(int(v.version) for v in found)]
    print(f"\nDone in {seconds:.0f} s. {len(versions)} registered versions of {registry.model_name}:")
    for version in versions:
        aliases = ", ".join(version.aliases) or "no alias"
        print(f"  v{version.version} ({aliases}): {version.tags.get('promotion_reason', '')}")
    print(
        f"\nBrowse it: make dev PLATFORM_HOME={platform_home()}  "
        "(runs tagged platform/trigger=automation are the retraining)"
    )


def _export_event_log(args: argparse.Namespace) -> None:
    """Write the simulated business as CSV event tables (``simulator.world.event_log``), a dbt seed to onboard."""
    from pathlib import Path

    from simulator.config import SimulatorConfig
    from simulator.world import event_log

    config = SimulatorConfig(start_date=args.start, customers=args.customers, days=args.days, seed=args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, frame in event_log(config).items():
        frame.write_csv(out / f"{name}.csv")
        print(f"{out / name}.csv: {frame.height} rows")


def _rollback(_: argparse.Namespace) -> None:
    """Give the champion alias back to the version that held it before the current one."""
    _init()
    from resources import build_resources

    registry = build_resources()["registry"]
    try:
        demoted, restored = registry.rollback()
    except RuntimeError as error:
        sys.exit(f"Nothing rolled back: {error}")
    print(f"{registry.model_name}: champion moved from version {demoted} back to version {restored}")


def _serve(args: argparse.Namespace) -> None:
    """Start the scoring API (uvicorn) on the configured address; SIGTERM stops it cleanly.

    Access is settled first: keys that cannot be used, or no keys on a non-loopback
    address (unless ``PLATFORM_SERVING_ALLOW_KEYLESS_REMOTE``), stop it before it binds.
    The workers' metrics go to one fresh folder, set before prometheus_client is imported
    (``serving/metrics.py``), so ``/metrics`` adds every worker up. With one worker this
    process is the worker, so it imports nothing it does not serve with: not the Dagster
    instance (a server starts no run), not dbt (a missing manifest is prepared by a child).
    """
    # A parent that ignores SIGTERM (some shells and supervisors here do) passes that on: the server must stop on
    # it all the same, also before uvicorn installs its own handler (which then drains the requests in flight).
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    current = settings()
    host, port = args.host or current.serving_host, args.port if args.port is not None else current.serving_port
    metrics = platform_home() / "serving" / "metrics" / f"{port}-{os.getpid()}"
    shutil.rmtree(metrics, ignore_errors=True)
    metrics.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics)  # inherited by the workers
    from platform_assets.serving.access import ApiKeys, KeysInvalid, exposure

    try:
        keys = ApiKeys(current.serving_api_keys, current.serving_api_keys_file)
        access = exposure(keys, host, port, current.serving_allow_keyless_remote)
    except KeysInvalid as error:
        sys.exit(f"Not serving: {error}")
    print(f"PLATFORM_HOME={export_environment()}")
    if not current.dbt_manifest_path.exists():
        subprocess.run([sys.executable, "-m", "platform_assets.cli", "prepare"], check=True)
    import uvicorn

    (LOG.info if keys.configured else LOG.warning)(access)
    print(f"Scoring API on http://{host}:{port} (OpenAPI at /docs), serving {current.serving_model}", flush=True)
    try:
        uvicorn.run(
            "platform_assets.serving.worker:create_app",
            factory=True,
            host=host,
            port=port,
            workers=args.workers or current.serving_workers,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=30,
        )
    finally:
        shutil.rmtree(metrics, ignore_errors=True)


def _serving_key(args: argparse.Namespace) -> None:
    """Print a fresh API key once, and the keys-file line (its hash) that configures it."""
    from platform_assets.serving.access import KeysInvalid, key_line

    try:
        key, line = key_line(args.name)
    except KeysInvalid as error:
        sys.exit(str(error))
    name, digest = line.split()
    print(f"API key for {name} (shown once; give it to the client, store it nowhere else):\n  {key}")
    print(f"Add this line to PLATFORM_SERVING_API_KEYS_FILE (read again within a request, no restart):\n  {line}")
    print(f"or this entry to PLATFORM_SERVING_API_KEYS (JSON):\n  {json.dumps({name: digest})}")


def world_options(parser: argparse.ArgumentParser, days: str = "days of history") -> argparse.ArgumentParser:
    """The simulated business's size, for the commands that build one (``PLATFORM_SIM_*`` by default)."""
    parser.add_argument("--customers", type=int, default=settings().sim_customers, help="customers simulated")
    parser.add_argument("--days", type=int, default=settings().sim_days, help=days)
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="churn-platform", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("prepare", help="parse the dbt project (writes the manifest)").set_defaults(func=_prepare)
    commands.add_parser("init", help="create the home and the Dagster instance config").set_defaults(func=_init)
    demo = world_options(commands.add_parser("demo", help="run the whole graph on the built-in simulated business"))
    demo.set_defaults(func=_demo)
    drift = world_options(commands.add_parser("drift-demo", help="inject drift and watch the platform retrain itself"))
    drift.add_argument("--quiet-days", type=int, default=3, help="days without drift after the history")
    drift.add_argument("--drift-days", type=int, default=9, help="days with drift")
    drift.add_argument("--minutes-factor", type=float, default=0.7, help="session time multiplier once drifted")
    drift.set_defaults(func=_drift_demo)
    commands.add_parser("rollback", help="give the champion alias back to the previous champion").set_defaults(
        func=_rollback
    )
    export = commands.add_parser(
        "export-event-log", help="write the simulated business as CSV event tables (customers, sessions, cancellations)"
    )
    export.add_argument("--out", required=True, help="folder to write the CSV files to (e.g. a dbt seeds folder)")
    export.add_argument("--customers", type=int, default=1000)
    export.add_argument("--days", type=int, default=240)
    export.add_argument("--start", default=settings().start_date.isoformat(), help="first day (ISO)")
    export.add_argument("--seed", type=int, default=7)
    export.set_defaults(func=_export_event_log)
    run = commands.add_parser("run", help="run one job now (ingest_raw, train_model, score_day, daily_pipeline, ...)")
    run.add_argument("job", help="the job's name")
    run.add_argument("--first", type=date.fromisoformat, help="first day, for a partitioned job")
    run.add_argument("--last", type=date.fromisoformat, help="last day (default: the first)")
    run.set_defaults(func=_run_job)
    serve = commands.add_parser("serve", help="start the online scoring API (FastAPI on uvicorn)")
    serve.add_argument("--host", help="address to bind (PLATFORM_SERVING_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (PLATFORM_SERVING_PORT, default 8000)")
    serve.add_argument("--workers", type=int, help="worker processes (PLATFORM_SERVING_WORKERS, default 1)")
    serve.set_defaults(func=_serve)
    key = commands.add_parser("serving-key", help="make an API key for the scoring API: prints it once and its hash")
    key.add_argument("name", help="the key's name, recorded in the audit (1 to 64 letters, digits, _.@-)")
    key.set_defaults(func=_serving_key)
    from platform_assets.campaign_demo import add_command
    from platform_assets.decisions.review_cli import add_commands

    add_commands(commands, _init, _decision_scope)
    add_command(commands, _settle_environment, world_options)
    args = parser.parse_args(argv)
    log_to_stderr()
    from resources.locks import LockTimeout

    try:
        args.func(args)
    except LockTimeout as error:
        sys.exit(str(error))


if __name__ == "__main__":
    main()
