"""``churn-platform``: the commands README.md and the Makefile use.

The environment (``PLATFORM_HOME``, ``DAGSTER_HOME``, simulator size) is settled before
the definitions are imported, because resources resolve their paths at import.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import date, timedelta

from resources.settings import ensure_dagster_home, export_environment, start_date

LOG_LEVEL = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}


def _prepare(_: argparse.Namespace | None = None) -> None:
    """Parse the dbt project into target/manifest.json, which the definitions load."""
    export_environment()
    from resources.dbt import dbt_project

    dbt_project.preparer.prepare(dbt_project)
    print(f"dbt manifest ready: {dbt_project.manifest_path}")


def _init(_: argparse.Namespace | None = None) -> None:
    """Create the home: the Dagster instance config, the warehouse folder, empty lake tables."""
    home = export_environment()
    dagster_home = ensure_dagster_home(home)
    (home / "warehouse").mkdir(parents=True, exist_ok=True)
    from platform_assets.raw import create_missing_tables
    from resources import build_resources

    created = create_missing_tables(build_resources()["lake"])
    print(
        f"PLATFORM_HOME={home}\nDAGSTER_HOME={dagster_home}" + (f"\nCreated empty tables: {created}" if created else "")
    )


def _settle_environment(args: argparse.Namespace) -> None:
    os.environ["PLATFORM_SIM_CUSTOMERS"] = str(args.customers)
    os.environ["PLATFORM_SIM_DAYS"] = str(args.days)
    _init()
    from resources.dbt import dbt_project

    if not dbt_project.manifest_path.exists():
        _prepare()


def _run(job_name: str, instance, days: tuple[date, date] | None = None, tags: dict[str, str] | None = None):
    """Run a job of the code location in this process, recorded in the Dagster instance."""
    from platform_assets.definitions import defs

    job = defs.resolve_job_def(job_name)
    partition_tags = (
        {
            "dagster/asset_partition_range_start": days[0].isoformat(),
            "dagster/asset_partition_range_end": days[1].isoformat(),
        }
        if days
        else {}
    )
    result = job.execute_in_process(
        instance=instance, run_config=LOG_LEVEL, tags={**partition_tags, **(tags or {})}, raise_on_error=False
    )
    if not result.success:
        failures = [e.event_specific_data.error.message for e in result.all_events if e.is_step_failure]
        sys.exit(f"Run {result.run_id} of {job_name} failed:\n" + "\n".join(failures))
    return result


def _demo(args: argparse.Namespace) -> None:
    """Build the whole graph on the simulated business, in three runs.

    ``ingest_raw`` loads the whole history through the contracts in one run,
    ``train_model`` builds the dbt features and a promoted model, and ``score_day``
    scores the last day.
    """
    _settle_environment(args)
    import dagster as dg

    first = date.fromisoformat(start_date())
    last = first + timedelta(days=args.days - 1)
    started = time.monotonic()
    with dg.DagsterInstance.get() as instance:
        print(f"Building {first}..{last} for about {args.customers} customers in {os.environ['PLATFORM_HOME']}")
        tags = {"platform/trigger": "demo"}
        results = [
            _run("ingest_raw", instance, (first, last), tags),
            _run("train_model", instance, None, tags),
            _run("score_day", instance, (last, last), tags),
        ]
        _summarize(results, time.monotonic() - started)


def _summarize(results, seconds: float) -> None:
    import dagster as dg

    from platform_assets.definitions import defs
    from resources.settings import platform_home

    home = platform_home()
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
    failed = [c for c in checks if not c.passed]
    print(f"\n{len(checks)} checks evaluated, {len(failed)} failed.")
    for check in failed:
        print(f"  FAILED {check.asset_key.to_user_string()}:{check.check_name} ({check.severity.value})")
    model = {k: v.value for k, v in latest[dg.AssetKey("churn_model")].metadata.items()}
    gate = {k: v.value for k, v in latest[dg.AssetKey("champion_model")].metadata.items()}
    scored = {k: v.value for k, v in latest[dg.AssetKey("churn_predictions")].metadata.items()}
    print(
        f"\nModel:               churn_model v{model['model_version']}, validation ROC AUC "
        f"{model['validation_roc_auc']:.3f}, lift in the top decile {model['validation_lift_top_decile']:.1f}\n"
        f"Promotion gate:      {gate['reason']}\n"
        f"Predictions:         {scored['dagster/row_count']} customers scored by v{scored['model_version']}, "
        f"{scored['high_risk']} high risk, {scored['flagged_for_review']} flagged for review\n"
        f"\nLake (Delta):        {home / 'lake'}\n"
        f"Warehouse (DuckDB):  {home / 'warehouse' / 'churn.duckdb'}\n"
        f"MLflow (SQLite):     {home / 'mlflow'}  (browse with `make mlflow`)\n"
        f"Dagster instance:    {os.environ['DAGSTER_HOME']}\n"
        f"Assets:              {len(graph.get_all_asset_keys())} in one graph; browse them with `make dev` "
        "at http://127.0.0.1:3000"
    )


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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="churn-platform", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("prepare", help="parse the dbt project (writes the manifest)").set_defaults(func=_prepare)
    commands.add_parser("init", help="create the home and the Dagster instance config").set_defaults(func=_init)
    demo = commands.add_parser("demo", help="run the whole graph on the built-in simulated business")
    demo.add_argument("--customers", type=int, default=int(os.environ.get("PLATFORM_SIM_CUSTOMERS", 20_000)))
    demo.add_argument("--days", type=int, default=int(os.environ.get("PLATFORM_SIM_DAYS", 180)))
    demo.set_defaults(func=_demo)
    commands.add_parser("rollback", help="give the champion alias back to the previous champion").set_defaults(
        func=_rollback
    )
    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
