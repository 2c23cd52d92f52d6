"""The dbt project as assets: staging views, features and the training set.

The translator maps each dbt source onto the raw asset that writes it, so raw tables,
dbt models and their tests form one lineage graph. Groups and owners come from the
dbt groups (``models/groups.yml``), descriptions and column docs from the YAML.
"""

from collections.abc import Mapping
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, dbt_assets

from platform_assets.contracts import CONTRACTS
from platform_assets.raw import lake_table
from resources.dbt import dbt_project
from resources.lake import Lake
from resources.warehouse import Warehouse

dbt_project.prepare_if_dev()


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


@dbt_assets(
    manifest=dbt_project.manifest_path,
    project=dbt_project,
    dagster_dbt_translator=PlatformDbtTranslator(),
)
def dbt_models(context: dg.AssetExecutionContext, dbt: DbtCliResource, lake: Lake, warehouse: Warehouse):
    """Build and test the selected models; record which lake versions they were built from.

    The build holds the warehouse's write lock from the start of dbt until this process
    has closed its own DuckDB connection (row counts and column schemas read through it).
    """
    with warehouse.writing(f"run {context.run_id}, dbt build", context.log):
        versions = {f"raw_{t}": lake.version(lake_table(t)) for t in CONTRACTS}
        context.log.info(f"Building from lake versions {versions}")
        invocation = dbt.cli(["build"], context=context)
        try:
            for event in invocation.stream().fetch_row_counts().fetch_column_metadata():
                if isinstance(event, (dg.Output, dg.AssetMaterialization)):
                    event = event.with_metadata({**event.metadata, "lake_versions": dg.MetadataValue.json(versions)})
                yield event
        finally:
            _close_duckdb_adapter(invocation.adapter)


def _close_duckdb_adapter(adapter) -> None:
    """Close the DuckDB connection dagster-dbt opened in this process for row counts and schemas.

    dbt-duckdb keeps it in a class-level environment after the build; left open, it
    holds the warehouse file with a read-write configuration, and read-only readers in
    the same process (the ML assets under the in-process executor) are refused.
    """
    manager = type(getattr(adapter, "connections", None))
    environment = getattr(manager, "_ENV", None)
    if environment is not None:
        environment.close()
        manager.close_all_connections()
