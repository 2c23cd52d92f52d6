"""Jobs: named selections of the asset graph that people and automation launch.

Training and scoring jobs select what the ML assets of a declared dataset actually
depend on (their upstream dbt models, whatever folder or group those live in), so a
new dbt model is never left out of the job that needs it.
"""

from functools import cache

import dagster as dg

from platform_assets.datasets import DATASETS, DEFAULT, dbt_key, performance_partitions
from platform_assets.ml.feature_spec import Dataset
from platform_assets.partitions import daily_partitions

RAW = dg.AssetSelection.groups("raw")
SCORING_ASSETS = (
    "churn_predictions",
    "feature_drift_report",
    "prediction_drift_report",
    "model_performance",
    "business_impact",
    "online_features",  # the scoring API's snapshot, refreshed once the day's features are built
)


def _assets(dataset: Dataset, *names: str) -> dg.AssetSelection:
    return dg.AssetSelection.assets(*(dg.AssetKey(dataset.key(n)) for n in names))


def _name(dataset: Dataset, job: str) -> str:
    """The default dataset's jobs keep their names; another dataset's carry its registered model name."""
    return f"{job}_{dataset.registered_model}" if dataset.prefix else job


@cache
def training_job(dataset: Dataset):
    # Not partitioned: a partitioned run over a range plans every asset once per day,
    # which for 180 days is thousands of bookkeeping events for assets built once.
    return dg.define_asset_job(
        _name(dataset, "train_model"),
        selection=_assets(dataset, "champion_model").upstream() - RAW,
        description=f"Build the dbt models `{dataset.registered_model}` is trained on, train a challenger, "
        "run the promotion gate.",
    )


def _judged_by_day(dataset: Dataset) -> bool:
    """Whether ``model_performance`` has the daily partitions, so a day's scoring run can judge it too."""
    return performance_partitions(dataset) == daily_partitions


def _scoring(dataset: Dataset) -> dg.AssetSelection:
    """The scoring and monitoring assets a day's run builds (``model_performance`` when judged by day)."""
    return _assets(dataset, *(n for n in SCORING_ASSETS if n != "model_performance" or _judged_by_day(dataset)))


@cache
def scoring_job(dataset: Dataset):
    judged = _judged_by_day(dataset)
    return dg.define_asset_job(
        _name(dataset, "score_day"),
        selection=_scoring(dataset),
        partitions_def=daily_partitions,
        description=f"Score a day with the `{dataset.registered_model}` champion and monitor it (drift, "
        + ("matured performance, " if judged else "")
        + "business impact).",
    )


@cache
def performance_job(dataset: Dataset):
    """For a dataset whose outcomes mature past today (``datasets.performance_partitions``): a job can
    hold one partitions definition only, so its matured performance is a job of its own."""
    return dg.define_asset_job(
        _name(dataset, "monitor_performance"),
        selection=_assets(dataset, "model_performance"),
        partitions_def=performance_partitions(dataset),
        description=f"Judge the `{dataset.registered_model}` predictions of one label horizon before the day on "
        "their matured outcomes.",
    )


@cache
def retraining_job(dataset: Dataset):
    # The training model samples the whole history, so daily runs leave it to (re)training.
    return dg.define_asset_job(
        _name(dataset, "retrain_model"),
        selection=dg.AssetSelection.assets(dbt_key(dataset.training_model))
        | _assets(dataset, "churn_model", "champion_model"),
        description=f"Sample a fresh `{dataset.registered_model}` training model, train a challenger on it and run "
        "the promotion gate.",
    )


ingest_job = dg.define_asset_job(
    "ingest_raw",
    selection=RAW,
    partitions_def=daily_partitions,
    description="Load days of raw data through their contracts into the lake.",
)
train_job = training_job(DEFAULT)
score_job = scoring_job(DEFAULT)
retrain_job = retraining_job(DEFAULT)
daily_pipeline = dg.define_asset_job(
    "daily_pipeline",
    selection=(
        RAW
        | dg.AssetSelection.assets(
            *(dbt_key(m) for m in (DEFAULT.training_model, DEFAULT.scoring_model, DEFAULT.outcome_model))
        ).upstream()
        | _scoring(DEFAULT)
    )
    - dg.AssetSelection.assets(*(dbt_key(d.training_model) for d in DATASETS)),
    partitions_def=daily_partitions,
    description="A new day end to end: raw data and contracts, the dbt models of that day (features, outcomes; "
    "not the training sets), predictions and monitoring.",
)
OTHER_JOBS = [
    *(job(d) for d in DATASETS if d != DEFAULT for job in (training_job, scoring_job, retraining_job)),
    *(performance_job(d) for d in DATASETS if not _judged_by_day(d)),
]
