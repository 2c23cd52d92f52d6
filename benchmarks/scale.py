"""Scale benchmark: a full build, then daily increments, stage by stage, against bare DuckDB and LightGBM.

    .venv/bin/python benchmarks/scale.py --customers 50000 --days 180 --extra-days 2 [--then-days 360]

Simulates ``customers`` over ``days + extra_days`` days in a fresh home (a temp dir, or
``--home``). The full build ingests days 0..days-1, builds their features in one run,
trains and promotes a model, and scores and monitors the last day (apart from its time, it also scores
the day a label horizon before the first increment, whose predictions that increment's monitoring
judges, as the increments after a backfill judge theirs); then each extra day
runs as a daily increment: its files land (Parquet, one per raw table, outside the
timings), then raw, features, predictions, monitoring. With ``--then-days M``
the history is then backfilled to M days (raw and features, a range run each, and the day a horizon
before M scored) and the
increments run again, so their cost can be compared against the history's length. ``--start-at
training`` resumes in an existing ``--home`` after its full build's features; ``--start-at later``
runs only the increments after ``--then-days``' backfill (an interrupted run's). Every stage is a
Dagster materialization of the platform's own assets, run in this process (dbt runs as
its child process).

For each stage it prints the seconds, the peak RSS of this process (exact: the kernel's
high-water mark, reset before each stage) and of every child process (sampled every
0.1 s, so a spike shorter than that can be missed; the exact peak of the largest child
over the whole run comes from getrusage at the end), and the rows written. Features and
predictions are also timed "bare": the same compiled SQL run by DuckDB alone (sources
loaded from the same Delta tables, same memory limit and threads), and LightGBM alone on
the same day's features (probabilities and SHAP contributions, as the platform computes),
without Dagster, dbt, their tests or the Delta write; ``ratio`` is platform over bare.
The last line is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import threading
import time
from datetime import date, timedelta
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(CHECKOUT))

from platform_assets.runs import QUIET, range_tags  # noqa: E402  (after the checkout is on the path)

GB = 1024**3
# Figures of a stage printed on its line (all of them are in the JSON).
SHOWN = (
    "validation_roc_auc",
    "training_rows",
    "trees",
    "candidate_model_seconds",
    "rows_with_reasons",
    "scoring_seconds",
)


def _status_kb(pid: int | str, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except FileNotFoundError:  # the thread ended meanwhile
            continue
    return found


class ProcessPeaks:
    """Peak RSS of this process (kernel high-water mark) and of its descendants (sampled)."""

    def __init__(self, interval: float = 0.1):
        self.interval, self.peaks, self._stop = interval, {}, threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self):
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peaks["benchmark (Dagster, in-process)"] = _status_kb("self", "VmHWM") * 1024

    def _sample(self):
        while not self._stop.wait(self.interval):
            pending, seen = _children(os.getpid()), []
            while pending:
                pid = pending.pop()
                try:
                    name = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                    label = " ".join(Path(p.decode()).name for p in name[:2] if p)
                    rss = _status_kb(pid, "VmRSS") * 1024
                    pending += _children(pid)
                except (FileNotFoundError, ProcessLookupError, IndexError):
                    continue
                seen.append((label, rss))
                if label:  # an exited child has no command line
                    self.peaks[label] = max(self.peaks.get(label, 0), rss)
            if seen:
                total = sum(r for _, r in seen)
                self.peaks["children together"] = max(self.peaks.get("children together", 0), total)


def _settle(args) -> Path:
    home = Path(args.home or tempfile.mkdtemp(prefix="churn-scale-")).resolve()
    os.environ.update(
        PLATFORM_HOME=str(home),
        DAGSTER_HOME=str(home / "dagster"),
        PLATFORM_SIM_CUSTOMERS=str(args.customers),
        PLATFORM_SIM_DAYS=str(max(args.days, args.then_days or 0) + args.extra_days),
        PLATFORM_FEATURE_DAYS=args.feature_days,
        MLFLOW_DISABLE_TELEMETRY="true",
    )
    from resources.settings import settings

    # A simulated calendar may run past today (360 days from 2026-01-01 do, in December 2026); its days are
    # deliveries of the simulated business, not mistyped years, so the landing zone takes them.
    last_day = settings().start_date + timedelta(days=settings().sim_days - 1)
    if (ahead := (last_day - date.today()).days) > settings().landing_future_days:
        os.environ["PLATFORM_LANDING_FUTURE_DAYS"] = str(ahead)
    from platform_assets.cli import _init, _prepare
    from resources.dbt import dbt_project

    _init()
    if not dbt_project().manifest_path.exists():
        _prepare()
    return home


class Benchmark:
    def __init__(self, args):
        import dagster as dg

        from platform_assets.definitions import build_definitions
        from resources.settings import settings

        self.dg, self.args = dg, args
        self.defs = build_definitions()
        self.assets = list(self.defs.assets)
        self.instance = dg.DagsterInstance.get()
        self.settings = settings()
        self.first = self.settings.start_date
        self.bare_path = self.settings.resolved_home / "bare" / "churn.duckdb"

    def day(self, n: int) -> date:
        return self.first + timedelta(days=n)

    def materialize(self, selection, first: date | None = None, last: date | None = None, run_config=QUIET):
        dg = self.dg
        tags = {}
        if first is not None:
            tags = range_tags(first, last)
        result = dg.materialize(
            self.assets,
            selection=selection,
            instance=self.instance,
            resources=self.defs.resources,
            tags=tags,
            run_config=run_config,
            raise_on_error=False,
        )
        if not result.success:
            failures = [e.event_specific_data.error.message for e in result.all_events if e.is_step_failure]
            sys.exit(f"{selection} failed:\n" + "\n".join(failures))
        return result

    def stage(self, name: str, run) -> dict:
        """Time the platform's part of a stage, then (outside its time and peaks) the bare baseline.

        The load average (1, 5 and 15 minutes) is read as the stage ends: every figure is
        printed beside the load it was measured under.
        """
        started = time.monotonic()
        with ProcessPeaks() as peaks:
            rows, extra, baseline = run()
        record = {
            "stage": name,
            "seconds": round(time.monotonic() - started, 2),
            "load_average": [round(x, 2) for x in os.getloadavg()],
            "rows": rows,
            "peak_rss_gb": {k: round(v / GB, 2) for k, v in sorted(peaks.peaks.items())},
            **extra,
        }
        bare = baseline() if baseline else None
        if bare:
            record["bare_seconds"] = bare
            record["ratio"] = round(record["seconds"] / bare, 1)
            record["rows_per_second"] = round(rows / record["seconds"])
            record["bare_rows_per_second"] = round(rows / bare)
        rss = ", ".join(f"{k} {v}" for k, v in record["peak_rss_gb"].items())
        load = "/".join(f"{x:.1f}" for x in record["load_average"])
        print(
            f"{name:<28}{record['seconds']:>9.1f} s  rows {rows:>11,}"
            + (f"  bare {bare:.1f} s, x{record['ratio']}" if bare else "")
            + "".join(f"  {k} {v}" for k, v in extra.items() if k in SHOWN)
            + f"  load {load}  peak RSS GB: {rss}",
            flush=True,
        )
        return record

    def raw(self, first: date, last: date):
        dg = self.dg
        result = self.materialize(dg.AssetSelection.groups("raw"), first, last)
        # One materialization per day of the range, each with the whole run's count.
        counts = {
            e.asset_key: e.event_specific_data.materialization.metadata["dagster/row_count"].value
            for e in result.get_asset_materialization_events()
            if "dagster/row_count" in e.event_specific_data.materialization.metadata
        }
        return sum(counts.values()), {}, None

    def features(self, first: date, last: date, full: bool):
        from platform_assets.defs.features.assets import by_day_models

        result = self.materialize(self.dg.AssetSelection.assets(by_day_models()), first, last)
        # Each dbt invocation has its own target folder under the home, named after the run.
        (run_dir,) = self.settings.dbt_target_path.glob(f"dbt_models-{result.run_id[:7]}-*")
        compiled = run_dir / "compiled" / "churn_platform" / "models"
        rows = self.count("customer_features", first, last)
        timing = _dbt_timing(run_dir / "run_results.json")
        return rows, timing, lambda: self.bare_features(compiled, first, last, full)

    def count(self, relation: str, first: date, last: date) -> int:
        return int(
            self.defs.resources["warehouse"]
            .query(f"select count(*) as n from {relation} where snapshot_date between ? and ?", [first, last])
            .item()
        )

    def bare_features(self, compiled: Path, first: date, last: date, full: bool) -> float:
        """The same compiled SQL in DuckDB alone, sources read from Delta as dbt reads them.

        The per-customer raw tables are copied, the event tables are views over their Delta
        scan; models built by day (staging by landing day, features by snapshot day) replace
        their days with a delete and an insert, as dbt does, or are created whole on a full build.
        """
        import duckdb
        from deltalake import DeltaTable

        from platform_assets.contracts import CONTRACTS
        from platform_assets.defs.features.assets import _staged_by_day
        from platform_assets.tables import raw_table

        lake = self.defs.resources["lake"]
        by_landing_day = _staged_by_day()
        self.bare_path.parent.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        config = {
            "memory_limit": self.settings.duckdb_memory_limit,
            "threads": self.settings.duckdb_threads,
            "temp_directory": str(self.bare_path.parent / "spill"),
        }
        with duckdb.connect(str(self.bare_path), config=config) as con:
            con.execute("create schema if not exists lake")
            for table in CONTRACTS:
                con.register(f"raw_{table}_dataset", DeltaTable(lake.uri(raw_table(table))).to_pyarrow_dataset())
                kind = "view" if table in by_landing_day.values() else "table"
                con.execute(f"create or replace {kind} lake.raw_{table} as select * from raw_{table}_dataset")
            for path in sorted((compiled / "staging").glob("*.sql")):
                if path.stem in by_landing_day:
                    _replace_days(con, path.stem, path.read_text(), "loaded_on", full)
                else:
                    con.execute(f"create or replace view {path.stem} as {path.read_text()}")
            intermediate = compiled / "intermediate"
            _replace_days(
                con,
                "int_customer_activity",
                (intermediate / "int_customer_activity.sql").read_text(),
                "loaded_on",
                full,
            )
            _replace_days(
                con, "int_snapshot_calendar", (intermediate / "int_snapshot_calendar.sql").read_text(), "", True
            )
            # One query for the range, which replaces the range's days (dbt's pre-hook deletes them).
            features = (compiled / "marts" / "customer_features.sql").read_text()
            if full:
                con.execute(f"create or replace table customer_features as {features}")
            else:
                con.execute(
                    f"delete from customer_features where snapshot_date between date '{first}' and date '{last}'"
                )
                con.execute(f"insert into customer_features {features}")
        return round(time.monotonic() - started, 2)

    def training(self):
        from platform_assets.defs.features.assets import whole_history_models

        dg = self.dg
        models = dg.AssetSelection.assets(whole_history_models())  # training_set and what it reads, built whole
        result = self.materialize(models | dg.AssetSelection.assets("candidate_model", "champion_model"))
        metadata = {
            e.asset_key.to_user_string(): e.event_specific_data.materialization.metadata
            for e in result.get_asset_materialization_events()
        }
        rows = metadata["training_set"]["dagster/row_count"].value
        model = metadata["candidate_model"]
        extra = {
            "validation_roc_auc": round(model["validation_roc_auc"].value, 3),
            "training_sample": model["training_sample"].value,
            "training_rows": model["training_rows"].value,
            "trees": model["best_iteration"].value,
            "candidate_model_seconds": _step_seconds(self.instance, result, "candidate_model"),
        }
        return rows, extra, self.bare_training

    def bare_training(self) -> float:
        """lightgbm.train alone on the rows the champion boosted on, as many trees, same parameters.

        The rows are read the way training read them (the same sample of training_set) and
        split by the version's recorded split; the timer covers Dataset construction and
        boosting only.
        """
        import lightgbm as lgb

        from platform_assets.defs.datasets import spec_of
        from platform_assets.defs.ml.assets import TrainingConfig
        from platform_assets.ml.feature_spec import datasets
        from platform_assets.ml.pyfunc_model import encode
        from platform_assets.ml.sample import read_sample
        from platform_assets.ml.training import TimeSplit, labels, learning_parts
        from resources.dbt import dbt_project

        spec = spec_of(datasets(dbt_project().manifest_path)[0])
        registry = self.defs.resources["registry"]
        version = registry.version("champion")
        model = registry.load(version.version)
        frame = read_sample(self.defs.resources["warehouse"], spec, self.settings.training_max_rows)[0]
        frame = frame.sort(spec.snapshot, spec.entity)
        config = TrainingConfig()
        rows = learning_parts(
            frame, spec, TimeSplit.from_json(registry.split(version.run_id)), config.early_stopping_share
        )
        params = {"objective": "binary", "verbosity": -1, **config.lightgbm_params()}
        matrix, label = encode(rows["train"], model.features, model.categories), labels(rows["train"], spec)
        started = time.monotonic()
        data = lgb.Dataset(matrix, label=label, feature_name=model.features, categorical_feature=list(model.categories))
        lgb.train(params, data, num_boost_round=model.booster.num_trees())
        return round(time.monotonic() - started, 2)

    def predictions(self, day: date):
        dg = self.dg
        result = self.materialize(dg.AssetSelection.assets("churn_predictions"), day, day)
        (event,) = result.get_asset_materialization_events()
        metadata = event.event_specific_data.materialization.metadata
        rows = metadata["dagster/row_count"].value
        extra = {
            "rows_with_reasons": metadata["rows_with_reasons"].value,
            "scoring_seconds": metadata["scoring_seconds"].value,  # the step's scoring and Delta write
        }
        return rows, extra, lambda: self.bare_predictions(day)

    def bare_predictions(self, day: date) -> float:
        """LightGBM's predict alone on the day's rows, encoded as the platform encodes them (encoding untimed)."""
        registry = self.defs.resources["registry"]
        model = registry.load(registry.version("champion").version)
        frame = self.defs.resources["warehouse"].query("select * from customer_features where snapshot_date = ?", [day])
        matrix = model.matrix(frame)
        started = time.monotonic()
        model.booster.predict(matrix)
        return round(time.monotonic() - started, 2)

    def increments(self, days: int, count: int) -> list[dict]:
        """``count`` daily increments after ``days`` days of history: raw, features, predictions, monitoring."""
        done = []
        for n in range(days, days + count):
            day = self.day(n)
            self.land(day)
            stages = [
                self.stage(f"{day}: raw", lambda d=day: self.raw(d, d)),
                self.stage(f"{day}: features", lambda d=day: self.features(d, d, full=False)),
                self.stage(f"{day}: predictions", lambda d=day: self.predictions(d)),
                self.stage(f"{day}: monitoring", lambda d=day: self.monitoring(d)),
            ]
            done.append(
                {"day": day.isoformat(), "seconds": round(sum(s["seconds"] for s in stages), 1), "stages": stages}
            )
        return done

    def judged_history(self, name: str, day_number: int) -> list[dict]:
        """Features and predictions of the day a label horizon before ``day_number``: the predictions that day's
        monitoring judges (``model_performance`` judges the latest scored day at or before the day minus the
        horizon). Without them, the first increments after the full build (which scores only its last day) have
        none to judge, while increments after a backfill judge the earlier increments' predictions: not like
        for like. Timed apart from the full build and the increments."""
        from platform_assets.defs.datasets import default, spec_of

        day = self.day(day_number - spec_of(default()).label_horizon_days)
        return [
            self.stage(
                f"{name}: features of {day} (judged on {self.day(day_number)})",
                lambda: self.features(day, day, full=False),
            ),
            self.stage(f"{name}: predictions of {day}", lambda: self.predictions(day)),
        ]

    def land(self, day: date) -> None:
        """Deliver a day as it arrives in production: one Parquet file per raw table in the landing zone.

        Outside the stage's time. The simulator has no state between runs, so simulating
        a day replays the world from its first day (about 70 s at 1M customers and 180
        days, growing with history); a day whose files landed is read from them instead,
        which is what an increment costs a platform fed by deliveries.
        """
        from simulator.world import simulate

        zone = self.settings.resolved_home / "landing"
        for table, frame in simulate(self.settings.simulator, day, day).items():
            (zone / table).mkdir(parents=True, exist_ok=True)
            frame.drop("ds").write_parquet(zone / table / f"{day.isoformat()}.parquet")
        time.sleep(self.settings.landing_quiet_seconds + 0.5)  # ingestion takes a file once it is quiet

    def monitoring(self, day: date):
        result = self.materialize(self.dg.AssetSelection.groups("monitoring"), day, day)
        return len(result.get_asset_materialization_events()), {}, None


def _step_seconds(instance, result, step: str) -> float:
    """Seconds from a step's start to its success, from the run's event log."""
    times = {
        e.dagster_event.event_type_value: e.timestamp
        for e in instance.all_logs(result.run_id)
        if e.dagster_event
        and e.dagster_event.step_key == step
        and e.dagster_event.event_type_value in ("STEP_START", "STEP_SUCCESS")
    }
    return round(times["STEP_SUCCESS"] - times["STEP_START"], 2)


def _replace_days(con, model: str, sql: str, day_column: str, whole: bool) -> None:
    if whole:
        con.execute(f"create or replace table {model} as {sql}")
        return
    con.execute(f"create or replace temp table new_days as {sql}")
    con.execute(f"delete from {model} where {day_column} in (select {day_column} from new_days)")
    con.execute(f"insert into {model} select * from new_days")


def _dbt_timing(run_results: Path) -> dict:
    """Seconds dbt spent in its nodes, from its own run results (summed over its 2 threads).

    The staging time is the event tables' landing days added from their Delta scan and
    the per-customer raw tables copied whole (small, one row per customer).
    """
    results = json.loads(run_results.read_text())["results"]

    def seconds(prefix: str) -> float:
        return round(sum(r["execution_time"] for r in results if r["unique_id"].startswith(prefix)), 2)

    return {
        "dbt_elapsed_seconds": round(json.loads(run_results.read_text())["elapsed_time"], 2),
        "dbt_staging_seconds": seconds("model.churn_platform.stg_"),
        "dbt_features_seconds": round(seconds("model.") - seconds("model.churn_platform.stg_"), 2),
        "dbt_tests_seconds": seconds("test."),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, required=True)
    parser.add_argument("--days", type=int, required=True, help="history of the full build (150 or more to train)")
    parser.add_argument("--extra-days", type=int, default=1, help="daily increments after it")
    parser.add_argument(
        "--then-days",
        type=int,
        help="then backfill the history to this many days and run the increments again (the cost of a day against history)",
    )
    parser.add_argument("--home", help="platform home (default: a fresh temp dir)")
    parser.add_argument(
        "--feature-days",
        choices=["used", "all"],
        default="used",
        help="snapshot days a range build computes (PLATFORM_FEATURE_DAYS): the training and scored days, or every day",
    )
    parser.add_argument(
        "--start-at",
        choices=["raw", "training", "later"],
        default="raw",
        help="training: --home already holds the full build's raw tables and features (an interrupted run's); "
        "later: it holds the whole run up to --then-days' backfill, and only the increments after it run",
    )
    args = parser.parse_args(argv)
    home = _settle(args)
    bench = Benchmark(args)
    last = bench.day(args.days - 1)
    print(
        f"{args.customers} customers, {args.days} days + {args.extra_days} increments, feature days {args.feature_days}, "
        f"home {home}",
        flush=True,
    )
    if args.start_at == "later" and not args.then_days:
        parser.error("--start-at later needs --then-days")
    full = []
    if args.start_at == "raw":
        full += [
            bench.stage("full: raw", lambda: bench.raw(bench.first, last)),
            bench.stage("full: features", lambda: bench.features(bench.first, last, full=True)),
        ]
    judged, increments = [], []
    if args.start_at != "later":
        full += [
            bench.stage("full: training", bench.training),
            bench.stage("full: predictions", lambda: bench.predictions(last)),
            bench.stage("full: monitoring", lambda: bench.monitoring(last)),
        ]
        judged = bench.judged_history("history", args.days)
        increments = bench.increments(args.days, args.extra_days)
    full_seconds = round(sum(s["seconds"] for s in full), 1)  # the bare baselines excluded
    later, backfill = [], []
    if args.start_at == "later":
        later = bench.increments(args.then_days, args.extra_days)
    elif args.then_days:
        first, last = bench.day(args.days + args.extra_days), bench.day(args.then_days - 1)
        print(f"Backfilling {first}..{last}, then increments at {args.then_days} days of history", flush=True)
        backfill = [
            bench.stage("backfill: raw", lambda: bench.raw(first, last)),
            bench.stage("backfill: features", lambda: bench.features(first, last, full=False)),
            *bench.judged_history("backfill", args.then_days),
        ]
        later = bench.increments(args.then_days, args.extra_days)
    stages = full + judged + [s for i in increments + later for s in i["stages"]] + backfill
    main_process = max(s["peak_rss_gb"]["benchmark (Dagster, in-process)"] for s in stages)
    usage = {  # this process's own getrusage peak was reset with each stage's high-water mark
        "benchmark (Dagster, in-process)": main_process * GB,
        "largest child": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024,
    }
    summary = {
        "customers": args.customers,
        "days": args.days,
        "extra_days": args.extra_days,
        "full_build_started_at": args.start_at,
        "feature_days": args.feature_days,
        "date": date.today().isoformat(),
        "full_build_seconds": full_seconds,
        "full_build": full,
        "judged_history": judged,
        "increments": increments,
        "increment_seconds": [i["seconds"] for i in increments],
        **(
            {
                "then_days": args.then_days,
                "later_increments": later,
                "later_increment_seconds": [i["seconds"] for i in later],
                "later_over_first_increment": round(
                    statistics.median(i["seconds"] for i in later)
                    / statistics.median(i["seconds"] for i in increments),
                    2,
                )
                if increments
                else None,
            }
            if later
            else {}
        ),
        "peak_rss_gb_whole_run": {k: round(v / GB, 2) for k, v in usage.items()},
        "warehouse_gb": round(bench.settings.warehouse_path.stat().st_size / GB, 2),
    }
    if later:
        print(
            f"\nIncrements at {args.then_days} days of history {summary['later_increment_seconds']} s"
            + (f": x{summary['later_over_first_increment']} those at {args.days} days" if increments else "")
        )
    print(
        f"\nFull build {full_seconds} s; increments {summary['increment_seconds']} s; "
        f"peak RSS GB (exact, whole run) {summary['peak_rss_gb_whole_run']}"
    )
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
