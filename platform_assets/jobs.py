"""Jobs: named selections of the asset graph that people and automation launch."""

import dagster as dg

from platform_assets.partitions import daily_partitions

ingest_job = dg.define_asset_job(
    "ingest_raw",
    selection=dg.AssetSelection.groups("raw"),
    partitions_def=daily_partitions,
    description="Load days of raw data through their contracts into the lake.",
)

churn_pipeline = dg.define_asset_job(
    "churn_pipeline",
    selection=dg.AssetSelection.all(),
    partitions_def=daily_partitions,
    description="The whole graph for a day or a range of days: raw data, contracts, dbt features and tests.",
)
