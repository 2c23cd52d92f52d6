"""How dagster-dbt names, groups and partitions the dbt project's nodes."""

from collections.abc import Mapping
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator

from platform_assets.partitions import daily_partitions


class PlatformDbtTranslator(DagsterDbtTranslator):
    """dbt sources are the raw assets: ``source('lake', 'raw_sessions')`` is ``raw_sessions``."""

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        if dbt_resource_props["resource_type"] == "source":
            return dg.AssetKey(dbt_resource_props["name"])
        return super().get_asset_key(dbt_resource_props)

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        """The dbt group, else ``features``: a model in a new folder joins the dbt layer, never ``default``."""
        return super().get_group_name(dbt_resource_props) or "features"

    def get_tags(self, dbt_resource_props: Mapping[str, Any]) -> Mapping[str, str]:
        layer = dbt_resource_props.get("fqn", ["", "", ""])[1]
        return {**super().get_tags(dbt_resource_props), "layer": layer}

    def get_partitions_def(self, dbt_resource_props: Mapping[str, Any]) -> dg.PartitionsDefinition | None:
        """Daily partitions for the marts built by snapshot day; none for staging and intermediate models.

        All of them are built for the run's days in one dbt invocation, but only the marts the
        models read by day carry a status per day. Each partitioned asset costs a Dagster event
        per day of a run (150 days of 12 models were 1,800 events, about 12 ms each on SQLite).
        """
        config = dbt_resource_props.get("config", {})
        layer = dbt_resource_props.get("fqn", ["", ""])[1:2]
        by_day = config.get("materialized") == "incremental" and layer == ["marts"]
        return daily_partitions() if by_day else None
