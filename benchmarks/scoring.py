"""Benchmark: the platform's daily scoring step against bare ``booster.predict`` on the same rows.

Trains the champion through the real jobs on a small simulated business (raw ingestion,
dbt, training, promotion) in a temp home, at a small learning rate so that it has hundreds
of trees like the champion of a million customers (about 660), then draws ``--customers`` rows with
replacement from its last day's features (new customer ids). On those rows it times:

- bare: ``booster.predict`` on the already encoded matrix, nothing else;
- platform: what ``churn_predictions`` does after reading the day (encode, predict every
  row, bands, SHAP reasons for the actionable rows only, Arrow batches streamed into the
  day's Delta partition in one commit), and its first pass alone (encode and predict every
  row, bands), which is all the rows without reasons cost;
- reasons for all: the same step with ``reasons_for: all`` on ``--all-sample`` rows (every
  row explained costs about 50 times a prediction, so it is measured on a sample).

The last line of stdout is one JSON object.

    .venv/bin/python benchmarks/scoring.py --customers 200000
"""

import argparse
import contextlib
import json
import os
import resource
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path


def train_champion(days: int, learning_rate: float):
    """A champion trained and promoted by the platform's own jobs; its registry and last day's features."""
    import dagster as dg

    from platform_assets.definitions import build_definitions
    from platform_assets.runs import QUIET, range_tags
    from resources.settings import settings

    first = settings().start_date
    last = first + timedelta(days=days - 1)
    defs = build_definitions()
    span = range_tags(first, last)
    with dg.instance_for_test() as instance:
        defs.resolve_job_def("ingest_raw").execute_in_process(instance=instance, tags=span, run_config=QUIET)
        training = {"ops": {"candidate_model": {"config": {"learning_rate": learning_rate}}}}
        defs.resolve_job_def("train_model").execute_in_process(
            instance=instance, tags=span, run_config=QUIET | training
        )
    return defs.resources, last


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=200_000, help="rows scored")
    parser.add_argument("--world-customers", type=int, default=5_000, help="customers of the simulated business")
    parser.add_argument("--world-days", type=int, default=150, help="days of its history")
    parser.add_argument(
        "--learning-rate",
        type=float,
        default=0.005,
        help="the world's training rate: small, so that the champion has hundreds of trees as at full scale",
    )
    parser.add_argument("--all-sample", type=int, default=20_000, help="rows scored with reasons for all")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="scoring-bench-")) / "home"
    os.environ.update(
        PLATFORM_HOME=str(home),
        PLATFORM_SIM_CUSTOMERS=str(args.world_customers),
        PLATFORM_SIM_DAYS=str(args.world_days),
        MLFLOW_DISABLE_TELEMETRY="true",
    )
    os.environ.pop("DAGSTER_HOME", None)

    import numpy as np
    import polars as pl

    from platform_assets.ml.bands import bands_of
    from platform_assets.ml.scoring import DayScorer, ScoringConfig
    from resources.lake import Lake
    from resources.model_registry import CHAMPION

    with contextlib.redirect_stdout(sys.stderr):  # dbt's log, so that stdout is the result alone
        resources, last = train_champion(args.world_days, args.learning_rate)
    registry = resources["registry"]
    champion = registry.version(CHAMPION)
    model, bands = registry.load(champion.version), bands_of(registry.reference_profile(champion.run_id))
    columns = ", ".join(f'"{name}"' for name in ["customer_id", "snapshot_date", *model.features])
    day = resources["warehouse"].query(f"select {columns} from customer_features where snapshot_date = ?", [last])
    features = day.sample(args.customers, with_replacement=True, seed=1).with_columns(
        pl.int_range(pl.len()).alias("customer_id")
    )
    lake = Lake(root=str(home / "bench-lake"))
    constants = [pl.lit(last).alias("ds")]

    def platform(frame: pl.DataFrame, config: ScoringConfig) -> tuple[float, float, DayScorer]:
        """Seconds of the whole step and of its first pass (predict on every row), and the scorer."""
        started = time.perf_counter()
        scorer = DayScorer(model, frame, config, bands, ["customer_id", "snapshot_date"], constants)
        predicted = time.perf_counter() - started
        lake.replace_days("predictions/churn_predictions", scorer.batches, last, last)
        return time.perf_counter() - started, predicted, scorer

    matrix = model.matrix(features)
    started = time.perf_counter()
    model.booster.predict(matrix)
    bare = time.perf_counter() - started
    seconds, predicted, scorer = platform(features, ScoringConfig())
    explained = scorer.scores["explained_because"].drop_nulls()
    sample = features.head(args.all_sample)
    all_seconds, _, _ = platform(sample, ScoringConfig(reasons_for="all"))
    stored = lake.read_days("predictions/churn_predictions", last)
    assert stored.height == sample.height  # the last run replaced the day

    result = {
        "rows": features.height,
        "trees": model.booster.num_trees(),
        "features": len(model.features),
        "bare_predict_rows_per_second": round(features.height / bare),
        "platform_rows_per_second": round(features.height / seconds),
        "ratio_to_bare_predict": round(seconds / bare, 2),
        "platform_seconds": round(seconds, 2),
        "predict_pass_seconds": round(predicted, 2),
        "predict_pass_ratio_to_bare_predict": round(predicted / bare, 2),
        "reasons_and_write_seconds": round(seconds - predicted, 2),
        "share_with_reasons": round(explained.len() / features.height, 4),
        "rows_with_reasons_by_trigger": dict(explained.value_counts().iter_rows()),
        "reasons_for_all_rows_per_second": round(sample.height / all_seconds),
        "reasons_for_all_seconds_extrapolated": round(all_seconds * features.height / sample.height, 1),
        "mean_probability": round(float(np.mean(scorer.probability)), 4),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
