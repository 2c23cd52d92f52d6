"""Jobs: named selections of the asset graph that people and automation launch."""

import dagster as dg

from platform_assets.partitions import daily_partitions

ingest_job = dg.define_asset_job(
    "ingest_raw",
    selection=dg.AssetSelection.groups("raw"),
    partitions_def=daily_partitions,
    description="Load days of raw data through their contracts into the lake.",
)

# Not partitioned: a partitioned run over a range plans every asset once per day,
# which for 180 days is thousands of bookkeeping events for assets built once.
train_job = dg.define_asset_job(
    "train_model",
    selection=dg.AssetSelection.groups("staging", "features", "ml"),
    description="Build the dbt features and training set from the lake, train a challenger, run the promotion gate.",
)

scoring_job = dg.define_asset_job(
    "score_day",
    selection=dg.AssetSelection.groups("predictions", "monitoring"),
    partitions_def=daily_partitions,
    description="Score a day with the champion and monitor it (drift, matured performance, business impact).",
)

daily_pipeline = dg.define_asset_job(
    "daily_pipeline",
    selection=dg.AssetSelection.groups("raw", "staging", "features", "predictions", "monitoring"),
    partitions_def=daily_partitions,
    description="A new day end to end: raw data and contracts, dbt features, predictions and monitoring.",
)

retrain_job = dg.define_asset_job(
    "retrain_model",
    selection=dg.AssetSelection.assets("churn_model", "champion_model"),
    description="Train a challenger on the current training set and run the promotion gate.",
)
