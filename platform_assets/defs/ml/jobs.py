"""The ML domain's jobs: train a dataset's model, and retrain it when its checks keep failing.

They select what the ML assets actually depend on (their upstream dbt models, whatever
folder or group those live in), so a new dbt model is never left out of training.
"""

from __future__ import annotations

from functools import cache

import dagster as dg

from platform_assets.defs.datasets import dbt_key, selection
from platform_assets.defs.raw.jobs import RAW
from platform_assets.ml.feature_spec import Dataset


@cache
def training_job(dataset: Dataset) -> dg.UnresolvedAssetJobDefinition:
    # Not partitioned: a partitioned run over a range plans every asset once per day,
    # which for 180 days is thousands of bookkeeping events for assets built once.
    return dg.define_asset_job(
        dataset.name("train_model"),
        selection=selection(dataset, "champion_model").upstream() - RAW,
        description=f"Build the dbt models `{dataset.registered_model}` is trained on, train a challenger, "
        "run the promotion gate.",
    )


@cache
def retraining_job(dataset: Dataset) -> dg.UnresolvedAssetJobDefinition:
    # The training model samples the whole history, so daily runs leave it to (re)training.
    return dg.define_asset_job(
        dataset.name("retrain_model"),
        selection=dg.AssetSelection.assets(dbt_key(dataset.training_model))
        | selection(dataset, "candidate_model", "champion_model"),
        description=f"Sample a fresh `{dataset.registered_model}` training model, train a challenger on it and run "
        "the promotion gate.",
    )
