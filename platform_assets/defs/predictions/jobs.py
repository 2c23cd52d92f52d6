"""The predictions domain's jobs: score and monitor a day, and judge matured outcomes."""

from __future__ import annotations

from functools import cache

import dagster as dg

from platform_assets.defs.datasets import judged_by_day, performance_partitions, selection
from platform_assets.ml.feature_spec import Dataset
from platform_assets.partitions import daily_partitions

SCORING_ASSETS = (
    "churn_predictions",
    "feature_drift_report",
    "prediction_drift_report",
    "model_performance",
    "business_impact",
    "online_features",  # the scoring API's snapshot, refreshed once the day's features are built
)


def scoring_selection(dataset: Dataset) -> dg.AssetSelection:
    """The scoring and monitoring assets a day's run builds (``model_performance`` when judged by day)."""
    return selection(dataset, *(n for n in SCORING_ASSETS if n != "model_performance" or judged_by_day(dataset)))


@cache
def scoring_job(dataset: Dataset) -> dg.UnresolvedAssetJobDefinition:
    judged = judged_by_day(dataset)
    return dg.define_asset_job(
        dataset.name("score_day"),
        selection=scoring_selection(dataset),
        partitions_def=daily_partitions(),
        description=f"Score a day with the `{dataset.registered_model}` champion and monitor it (drift, "
        + ("matured performance, " if judged else "")
        + "business impact).",
    )


@cache
def performance_job(dataset: Dataset) -> dg.UnresolvedAssetJobDefinition:
    """For a dataset whose outcomes mature past today (``datasets.performance_partitions``): a job can
    hold one partitions definition only, so its matured performance is a job of its own."""
    return dg.define_asset_job(
        dataset.name("monitor_performance"),
        selection=selection(dataset, "model_performance"),
        partitions_def=performance_partitions(dataset),
        description=f"Judge the `{dataset.registered_model}` predictions of one label horizon before the day on "
        "their matured outcomes.",
    )
