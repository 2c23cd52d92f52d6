"""The dbt project as assets: staging views, features by snapshot day, and the training set.

The translator maps each dbt source onto the raw asset that writes it, so raw tables,
dbt models and their tests form one lineage graph (the campaign log, which the outcomes
read to flag treated labels, is the ``campaign_log`` asset of the decisions group).
Groups and owners come from the dbt groups (``models/groups.yml``), descriptions and
column docs from the YAML.

Features are built by day: a run over days passes them to dbt in its environment
(``build_days``), and the incremental models replace exactly those snapshot days
(customer_features builds a range in one set-based query), so a new day costs a day. A
backfill of a range is one dbt invocation; with ``PLATFORM_FEATURE_DAYS=used`` (passed on
in dbt's environment too) it builds only the days training and scoring read. The incremental models
and what they are built from (staging) are one asset definition, run for a day range;
of its assets only the marts built by snapshot day (``customer_features``) are daily
partitioned, the staging and intermediate models being materialized once per run with
the days in their metadata. The rest is built whole by an unpartitioned one: the
training models sample snapshot days through the whole history (daily runs leave them to
training), and the outcome views and an onboarded dataset's models have no days to build by.
"""

import json
from collections.abc import Callable, Mapping
from datetime import date
from functools import cache
from pathlib import Path
from typing import Any, NamedTuple

import dagster as dg
import duckdb
from dagster_dbt import dbt_assets
from dagster_dbt.dbt_project import using_dagster_dev
from pydantic import Field

from platform_assets.contracts import CONTRACTS
from platform_assets.defs.features.translator import PlatformDbtTranslator
from platform_assets.delta_source import build_days
from platform_assets.ml.feature_spec import datasets
from platform_assets.tables import CAMPAIGN_LOG, raw_table
from resources.dbt import PlatformDbtCli, dbt_project, prepare_if_changed
from resources.lake import Lake
from resources.settings import settings
from resources.warehouse import Warehouse

# The incremental models and everything they are built from are built by snapshot day.
BY_DAY = "+config.materialized:incremental"


class Plan(NamedTuple):
    """A dbt build: its arguments, the environment naming its days, and the days' metadata (None: built whole)."""

    args: list[str]
    environment: dict[str, str]
    days: dict[str, str] | None


class FeatureBuildConfig(dg.Config):
    full_refresh: bool = Field(
        default=False, description="Drop and rebuild every snapshot day (dbt --full-refresh), whatever the partition."
    )


def _project_assets(**selection):
    """``dbt_assets`` over the platform's dbt project (its manifest parsed first in development, if it changed)."""
    if using_dagster_dev():
        prepare_if_changed()
    return dbt_assets(
        manifest=dbt_project().manifest_path,
        project=dbt_project(),
        dagster_dbt_translator=PlatformDbtTranslator(),
        **selection,
    )


@cache
def by_day_models() -> dg.AssetsDefinition:
    """The incremental models and what they are built from, for a day range (``dbt_models``).

    Made on first use, not on import: it reads the manifest (and prepares it in development).
    The declared datasets' labelled training models are left to ``whole_history_models``.
    """

    @_project_assets(
        select=BY_DAY,
        exclude=" ".join(sorted({d.training_model for d in datasets(dbt_project().manifest_path)})),
        backfill_policy=dg.BackfillPolicy.single_run(),
    )
    def dbt_models(
        context: dg.AssetExecutionContext,
        config: FeatureBuildConfig,
        dbt: PlatformDbtCli,
        lake: Lake,
        warehouse: Warehouse,
    ):
        """Build and test the features of the run's days, or of every day on a full refresh."""
        days = context.partition_key_range  # inclusive at both ends, unlike partition_time_window

        def plan() -> Plan:
            feature_days = {"PLATFORM_FEATURE_DAYS": settings().feature_days}
            if config.full_refresh:
                built = {"snapshot_days": "all", "feature_days": settings().feature_days}
                return Plan(["--full-refresh"], {**build_days(), **feature_days}, built)
            built = {"snapshot_days": f"{days.start}..{days.end}", "feature_days": settings().feature_days}
            unstaged, first_landed = _first_unstaged_day(lake, warehouse, date.fromisoformat(days.end)), ""
            if unstaged is not None and unstaged.isoformat() < days.start:
                context.log.warning(
                    f"Landed days from {unstaged} on are missing from staging; adding them before the features "
                    f"of {days.start}..{days.end} read them."
                )
                built["landing_days_caught_up"] = f"{unstaged}..{days.start}"
                first_landed = unstaged.isoformat()
            return Plan([], {**build_days(days.start, days.end, first_landed), **feature_days}, built)

        yield from _build(context, dbt, lake, warehouse, plan)

    return dbt_models


def _staged_by_day() -> dict[str, str]:
    """The staging models built by landing day, and the raw table each reads: ``{model: table}``."""
    nodes = json.loads(dbt_project().manifest_path.read_text())["nodes"].values()
    return {
        node["name"]: source.rsplit(".raw_", 1)[1]
        for node in nodes
        if node["resource_type"] == "model" and node["config"].get("materialized") == "incremental"
        for source in node["depends_on"]["nodes"]
        if source.startswith("source.") and ".raw_" in source
    }


def _first_unstaged_day(lake: Lake, warehouse: Warehouse, last: date) -> date | None:
    """The first day up to ``last`` with rows in a raw table but none in its staging model.

    Staging is incremental by landing day, so a day range built before the days
    before it were staged (out of order, or into a new warehouse) would read a history
    with holes. Days are compared from the Delta log and a distinct over one column.
    """
    missing = []
    for model, table in _staged_by_day().items():
        landed = lake.days(raw_table(table), last)
        missing += sorted(landed - _staged_days(warehouse, model))[:1]
    return min(missing, default=None)


def _staged_days(warehouse: Warehouse, model: str) -> set[date]:
    if not Path(warehouse.path).exists():
        return set()
    try:
        return set(warehouse.query(f"select distinct loaded_on from {model}")["loaded_on"].to_list())
    except duckdb.CatalogException:  # not built yet
        return set()


@cache
def whole_history_models() -> dg.AssetsDefinition:
    """The models built whole (``dbt_whole_history``), made on first use like ``by_day_models``."""

    @_project_assets(exclude=BY_DAY, name="dbt_whole_history")
    def dbt_whole_history(context: dg.AssetExecutionContext, dbt: PlatformDbtCli, lake: Lake, warehouse: Warehouse):
        """The models built whole: training models sampling snapshot days through history, outcome
        views, and the models of datasets that are not built by day (an onboarded CSV's seed)."""
        yield from _build(context, dbt, lake, warehouse, lambda: Plan([], build_days(), None))

    return dbt_whole_history


def _build(
    context: dg.AssetExecutionContext,
    dbt: PlatformDbtCli,
    lake: Lake,
    warehouse: Warehouse,
    plan: Callable[[], Plan],
):
    """Build and test the selected models; record which lake versions (and days) they were built from.

    Each model's materialization carries the column schema the warehouse holds after the
    build, read in one query once dbt has exited (``built_columns``). A whole table's row
    count is only recorded for a whole build: on a day's partition it would claim the
    history's rows for that day. The build holds the warehouse's write lock from the start
    of dbt until those reads are done. ``plan`` gives dbt's arguments, environment and the
    days' metadata; it runs under the lock, because it reads what staging holds.
    """
    with warehouse.writing(f"run {context.run_id}, dbt build", context.log):
        args, environment, days = plan()
        versions = {f"raw_{t}": lake.version(raw_table(t)) for t in CONTRACTS}
        versions["campaign_log"] = lake.version(CAMPAIGN_LOG)  # None before the first campaign
        context.log.info(f"Building from lake versions {versions}")
        invocation = dbt.cli(["build", *args], context=context, environment=environment)
        events, failure = [], None
        try:
            events.extend(invocation.stream())
        except Exception as error:  # yield what was built, then fail the step with dbt's error
            failure = error
        relations = {
            e.metadata["unique_id"].value: _relation(invocation.manifest, e.metadata["unique_id"].value)
            for e in events
            if isinstance(e, (dg.Output, dg.AssetMaterialization)) and "unique_id" in e.metadata
        }
        described = built_columns(warehouse, relations.values(), count_rows=days is None)
    extra = {"lake_versions": dg.MetadataValue.json(versions), **(days or {})}
    for event in events:
        if isinstance(event, (dg.Output, dg.AssetMaterialization)):
            relation = relations.get(event.metadata.get("unique_id", dg.MetadataValue.text("")).value)
            event = event.with_metadata({**event.metadata, **described.get(relation, {}), **extra})
        yield event
    if failure is not None:
        raise failure


def _relation(manifest: Mapping[str, Any], unique_id: str) -> str:
    node = manifest["nodes"][unique_id]
    return f"{node['schema']}.{node.get('alias') or node['name']}"


def built_columns(warehouse: Warehouse, relations, count_rows: bool) -> dict[str, dict[str, Any]]:
    """``{relation: metadata}``: the column schema (and, if asked, row count) of each built relation.

    One read of DuckDB's information schema replaces dagster-dbt's ``fetch_column_metadata``,
    which opens a dbt adapter in this process (seconds of macro parsing per run) and polls
    its thread pool in a busy loop that starves dbt of a core.
    """
    wanted = sorted(set(relations))
    if not wanted:
        return {}
    columns = warehouse.query(
        "select table_schema || '.' || table_name as relation, column_name, data_type "
        "from information_schema.columns where table_schema || '.' || table_name in (select unnest(?)) "
        "order by relation, ordinal_position",
        [wanted],
    )
    described: dict[str, dict[str, Any]] = {}
    for (relation,), frame in columns.group_by("relation", maintain_order=True):
        schema = dg.TableSchema(
            columns=[dg.TableColumn(n, t) for n, t in frame.select("column_name", "data_type").rows()]
        )
        described[relation] = {"dagster/column_schema": schema}
    if count_rows and described:
        counts = warehouse.query(
            " union all ".join(f"select '{r}' as relation, count(*) as n from {r}" for r in described)
        )
        for relation, n in counts.rows():
            described[relation]["dagster/row_count"] = dg.MetadataValue.int(int(n))
    return described


def materialize_features(
    resources: Mapping[str, Any],
    instance: dg.DagsterInstance,
    *,
    tags: Mapping[str, str] | None = None,
    partition_key: str | None = None,
    run_config: Mapping[str, Any] | None = None,
    whole_history: bool = False,
) -> dg.ExecuteInProcessResult:
    """Build the features in this process, as a run over a day range (``tags``) or a day does, and the models
    built whole too if asked: for the demos, benchmarks and tests. The caller judges ``success``."""
    assets = [by_day_models(), *([whole_history_models()] if whole_history else [])]
    run = {"tags": tags, "partition_key": partition_key, "run_config": run_config}
    return dg.materialize(assets, instance=instance, resources=resources, raise_on_error=False, **run)
