"""online_feature_drift on answers whose features are of a day the reference profiles.

The API answers from the online store, whose rows carry their own snapshot day. An
answer read from a snapshot day that is part of the version's reference is one of the
reference's own rows: like a batch day in the reference (``reference_overlap``), it is
not compared. The asset runs for real on a lake and an MLflow registry in a temp dir.
"""

import json
from datetime import date

import dagster as dg
import mlflow
import numpy as np
import polars as pl
import pytest

from platform_assets.defs.datasets import default, spec_of
from platform_assets.defs.serving.assets import report_online_drift
from platform_assets.ml.profiles import build_profile, reference_rows
from platform_assets.ml.training import TimeSplit
from platform_assets.monitoring.drift import Thresholds
from platform_assets.serving.store import online_table, requests_table
from platform_assets.tables import ONLINE_DRIFT, SERVING_REQUESTS
from resources.lake import Lake
from resources.model_registry import ModelRegistry

TRAINED, LATER = date(2026, 3, 2), date(2026, 4, 20)  # a training snapshot, and one the model never saw
SERVED_ON = date(2026, 4, 21)


def customers(spec, snapshot: date, n: int, seed: int, shift: float = 0.0) -> pl.DataFrame:
    """Feature rows of one snapshot day; ``shift`` moves every feature by that many standard deviations."""
    rng = np.random.default_rng(seed)
    values = {name: rng.normal(shift, 1.0, n) for name in spec.features}
    ids = [f"c{seed}-{i}" for i in range(n)]
    return pl.DataFrame({spec.entity: ids, spec.snapshot: [snapshot] * n, **values})


@pytest.fixture
def platform(tmp_path):
    """A version of the built-in model whose reference is its training day TRAINED, and an empty online store."""
    spec = spec_of(default())
    registry = ModelRegistry(
        tracking_uri=f"sqlite:///{tmp_path}/mlflow.db", artifact_location=str(tmp_path / "artifacts")
    )
    client = registry.activate()
    history = pl.concat([customers(spec, TRAINED, 2000, 1), customers(spec, LATER, 500, 2)])
    split = TimeSplit(train=[TRAINED], validation=[LATER], horizon_days=30)
    rows, record = reference_rows(history, split, spec, "training", 300_000)
    profile = build_profile(rows, list(spec.features), np.random.default_rng(3).uniform(0, 0.3, rows.height))
    with mlflow.start_run() as run:
        mlflow.log_dict(profile | {"reference": record}, "reference_profile.json")
    client.create_registered_model(default().registered_model)
    client.create_model_version(default().registered_model, f"runs:/{run.info.run_id}/model", run.info.run_id)
    lake = Lake(root=str(tmp_path / "lake"))
    lake.overwrite(online_table(default()), customers(spec, LATER, 10, 4).with_columns(ds=pl.lit(LATER)))
    return spec, registry, lake, record


def serve(lake: Lake, spec, answered: pl.DataFrame) -> None:
    """The audit rows of the champion's answers on SERVED_ON, features as the API logs them (JSON)."""
    features = [json.dumps(r) for r in answered.select(spec.features).iter_rows(named=True)]
    rows = pl.DataFrame(
        {
            "customer_id": answered[spec.entity],
            "feature_snapshot_date": answered[spec.snapshot],
            "features": features,
            "model_version": "1",
            "role": "champion",
            "status": "ok",
            "churn_probability": np.random.default_rng(5).uniform(0, 0.3, answered.height),
            "ds": SERVED_ON,
        }
    )
    full = rows.with_columns(
        [pl.lit(None, dtype=t).alias(c) for c, t in SERVING_REQUESTS.schema.items() if c not in rows.columns]
    ).select([pl.col(c).cast(t) for c, t in SERVING_REQUESTS.schema.items()])
    lake.replace_days(requests_table(default()), full, SERVED_ON, SERVED_ON)


def judge(registry: ModelRegistry, lake: Lake) -> tuple[dict, dg.AssetCheckResult]:
    context = dg.build_asset_context(partition_key=SERVED_ON.isoformat())
    materialized, check = list(report_online_drift(context, Thresholds(), default(), registry, lake))
    return {k: getattr(v, "value", v) for k, v in materialized.metadata.items()}, check


def test_answers_all_from_a_reference_day_are_part_of_the_reference_not_a_pass(platform):
    """Before: `no feature drifted; score PSI ...`, passed, on the reference's own rows."""
    spec, registry, lake, record = platform
    serve(lake, spec, customers(spec, TRAINED, 2000, 1).head(300))
    metadata, check = judge(registry, lake)
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert check.description.startswith(
        "this day's answers are part of the reference, not a drift comparison: 300 of 300 served rows are part of "
        f"the reference (training rows): their features are of snapshot {TRAINED} (the reference is "
        f"{record['description']}); figures for information only (no feature drifted"
    )
    assert (metadata["served_rows"], metadata["compared_rows"]) == (300, 0)
    stored = lake.read_days(default().lake_table(ONLINE_DRIFT), SERVED_ON)
    assert set(stored["level"]) == {"in reference"}


def test_answers_from_a_reference_day_are_left_out_and_the_others_compared(platform):
    """Drifted answers of a later day beside the reference's own rows: only the later ones are compared, so the
    reference rows neither hide the drift nor count as a comparison."""
    spec, registry, lake, record = platform
    own = customers(spec, TRAINED, 2000, 1).head(300)
    serve(lake, spec, pl.concat([own, customers(spec, LATER, 300, 6, shift=1.0)]))
    metadata, check = judge(registry, lake)
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
    assert check.description.startswith(
        "compared 300 of 600 answers (300 of 600 served rows are part of the reference (training rows): their "
        f"features are of snapshot {TRAINED} (the reference is {record['description']})): tenure_days PSI"
    )
    assert (metadata["served_rows"], metadata["compared_rows"]) == (600, 300)
    stored = lake.read_days(default().lake_table(ONLINE_DRIFT), SERVED_ON)
    assert stored["current_mean"].min() > 0.8  # the shifted rows' means, not diluted by the reference rows


def test_too_few_answers_outside_the_reference_are_not_evaluated(platform):
    spec, registry, lake, _ = platform
    own = customers(spec, TRAINED, 2000, 1).head(250)
    serve(lake, spec, pl.concat([own, customers(spec, LATER, 100, 6)]))
    metadata, check = judge(registry, lake)
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert check.description.startswith("not evaluated: 250 of 350 served rows are part of the reference")
    assert check.description.endswith(f"and only 100 other champion answers on {SERVED_ON} (at least 200 needed)")
    assert metadata["dagster/row_count"] == 0
