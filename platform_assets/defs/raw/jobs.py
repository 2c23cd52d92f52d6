"""The raw domain's job: days of raw data through their contracts into the lake."""

from __future__ import annotations

from functools import cache

import dagster as dg

from platform_assets.partitions import daily_partitions

RAW = dg.AssetSelection.groups("raw")


@cache
def ingest_job() -> dg.UnresolvedAssetJobDefinition:
    return dg.define_asset_job(
        "ingest_raw",
        selection=RAW,
        partitions_def=daily_partitions(),
        description="Load days of raw data through their contracts into the lake.",
    )
