"""Benchmark: false alarms, detection delay and cost of the feature drift report.

Builds a simulated business through the real jobs (raw ingestion, then dbt) in a temp
home, with session time falling by ``--factor`` from day ``--drift-day``. Then, as
candidate_model and feature_drift_report do, it freezes a reference profile on the two
weeks before a deployment day and judges each following day:

- quiet: 30 days without drift (deployed 31 days before the drift starts);
- drift: the 10 days from the drift on (deployed the day before).

Time per day of the report (statistics and verdict) is compared with a bare baseline
in the same run: numpy PSI of every numeric feature on the same bins, nothing else.

    .venv/bin/python benchmarks/drift_detection.py --customers 20000
"""

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import numpy as np


def build_features(customers: int, drift_day: int, factor: float, days: int):
    """customer_features of a simulated business, built by the platform's own jobs."""
    import dagster as dg

    from resources.settings import settings

    first = settings().start_date
    os.environ["PLATFORM_SIM_CUSTOMERS"] = str(customers)
    drift = {"start_date": (first + timedelta(days=drift_day)).isoformat(), "session_minutes_factor": factor}
    os.environ["PLATFORM_SIM_DRIFT"] = json.dumps(drift)
    from platform_assets.definitions import build_definitions
    from platform_assets.defs.features.assets import by_day_models
    from platform_assets.runs import QUIET, range_tags

    defs = build_definitions()
    span = range_tags(first, first + timedelta(days=days - 1))
    with dg.instance_for_test() as instance:
        defs.resolve_job_def("ingest_raw").execute_in_process(instance=instance, tags=span, run_config=QUIET)
        dg.materialize([by_day_models()], instance=instance, resources=defs.resources, tags=span)
    frame = defs.resources["warehouse"].query(
        "select * from customer_features where snapshot_date >= ?", [first + timedelta(days=drift_day - 50)]
    )
    return frame, first


def bare_psi(reference: dict, frame, names: list[str]) -> None:
    for name in names:
        profile = reference["features"][name]
        if profile["kind"] != "numeric":
            continue
        values = frame[name].drop_nulls().cast(float).to_numpy()
        counts = np.bincount(np.searchsorted(profile["edges"], values), minlength=len(profile["edges"]) + 1)
        current = np.maximum(counts / counts.sum(), 1e-4)
        expected = np.maximum(np.asarray(profile["proportions"]), 1e-4)
        float(np.sum((current - expected) * np.log(current / expected)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--drift-day", type=int, default=190, help="first drifted day, counted from the start date")
    parser.add_argument("--factor", type=float, default=0.7, help="session time multiplier from the drift day")
    args = parser.parse_args()
    os.environ["PLATFORM_HOME"] = str(Path(tempfile.mkdtemp(prefix="drift-bench-")) / "home")
    os.environ.pop("DAGSTER_HOME", None)

    import polars as pl

    from platform_assets.ml.feature_spec import discover
    from platform_assets.ml.profiles import build_profile
    from platform_assets.monitoring.drift import Thresholds, feature_drift, judge_features
    from resources.dbt import dbt_project

    with contextlib.redirect_stdout(sys.stderr):  # dbt's log, so that stdout is the result alone
        features, first = build_features(args.customers, args.drift_day, args.factor, args.drift_day + 10)
    names = list(discover(dbt_project().manifest_path, "training_set", "customer_features").features)

    def on(n: int):
        return features.filter(pl.col("snapshot_date") == first + timedelta(days=n))

    def judge(deployed: int, days: range) -> list[dict]:
        window = features.filter(
            pl.col("snapshot_date").is_between(first + timedelta(days=deployed - 13), first + timedelta(days=deployed))
        )
        reference = build_profile(window, names, np.zeros(1))
        results = []
        for n in days:
            frame = on(n)
            started = time.perf_counter()
            verdict = judge_features(feature_drift(reference, frame, names), Thresholds())
            report_seconds = time.perf_counter() - started
            started = time.perf_counter()
            bare_psi(reference, frame, names)
            results.append(
                {
                    "day": n - days.start,
                    "rows": frame.height,
                    "severity": verdict.severity,
                    "drifted": sorted(verdict.drifted["feature"].to_list()),
                    "max_effect": round(verdict.report["effect_size"].max(), 3),
                    "top_feature": verdict.report.sort("effect_size")["feature"][-1],
                    "max_psi": round(verdict.report["psi"].max(), 3),
                    "seconds": report_seconds,
                    "bare_seconds": time.perf_counter() - started,
                }
            )
        return results

    quiet = judge(args.drift_day - 31, range(args.drift_day - 30, args.drift_day))
    drift = judge(args.drift_day - 1, range(args.drift_day, args.drift_day + 10))
    days = quiet + drift
    seconds = float(np.median([d["seconds"] for d in days]))
    bare = float(np.median([d["bare_seconds"] for d in days]))
    flagged = [d for d in drift if d["severity"] != "ok"]
    result = {
        "customers": args.customers,
        "features": len(names),
        "rows_per_day": int(np.median([d["rows"] for d in days])),
        "quiet_days": len(quiet),
        "quiet_warn_days": sum(d["severity"] == "warn" for d in quiet),
        "quiet_error_days": sum(d["severity"] == "error" for d in quiet),
        "quiet_max_effect": max(d["max_effect"] for d in quiet),
        "quiet_max_psi": max(d["max_psi"] for d in quiet),
        "quiet_top_feature": max(quiet, key=lambda d: d["max_effect"])["top_feature"],
        "first_warn_day_of_drift": flagged[0]["day"] if flagged else None,
        "first_error_day_of_drift": next((d["day"] for d in drift if d["severity"] == "error"), None),
        "features_flagged_in_drift": sorted({f for d in drift for f in d["drifted"]}),
        "drift_days": [{k: d[k] for k in ("day", "severity", "max_effect", "max_psi")} for d in drift],
        "report_seconds_per_day": round(seconds, 3),
        "bare_psi_seconds_per_day": round(bare, 4),
        "ratio_to_baseline": round(seconds / bare, 1),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
