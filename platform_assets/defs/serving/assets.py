"""The serving group: the online snapshot the API loads, and its traffic read back into the graph.

``online_features`` publishes each customer's latest feature row; the API writes the
audit table itself, and the daily ``serving_log`` takes a day of it into the graph
(counts, latency, errors, small files compacted). ``online_feature_drift`` measures the
served feature values and scores with the batch's own drift statistics against the
answering version's frozen reference, and ``rollout_report`` judges champion against
challenger on that traffic. Serving days are request days (UTC), today included.
"""

from datetime import date, timedelta
from functools import cache

import dagster as dg
import polars as pl
from pydantic import Field

from platform_assets.defs.datasets import dbt_key, spec_of
from platform_assets.defs.ml.assets import model_assets
from platform_assets.metadata import layer, markdown_table, stored_in
from platform_assets.ml.feature_spec import Dataset
from platform_assets.monitoring.drift import Thresholds, level_check
from platform_assets.partitions import serving_days
from platform_assets.rollout.evidence import paired_customers
from platform_assets.rollout.rules import ROLLOUT_CHECK, RolloutRules, judge_rollout
from platform_assets.serving.state import live_challenger, stage_of
from platform_assets.serving.store import (
    latest_snapshot_query,
    online_table,
    publish_snapshot,
    requests_table,
    snapshot_source,
)
from platform_assets.tables import ONLINE_DRIFT, SERVING_REQUESTS
from resources.lake import Lake
from resources.model_registry import CHALLENGER, CHAMPION, LIVE_SINCE, ModelRegistry
from resources.settings import settings
from resources.warehouse import Warehouse

ONLINE_DRIFT_CHECK = "online_feature_drift"
MIN_DRIFT_ROWS = 200
KINDS = {"delta", "polars"}


class OnlineFeaturesConfig(dg.Config):
    as_of: str | None = Field(
        default=None, description="Publish each customer's latest row at or before this day (ISO); default: latest."
    )


def publish_online_features(
    context: dg.AssetExecutionContext, config: OnlineFeaturesConfig, dataset: Dataset, warehouse: Warehouse, lake: Lake
) -> dg.MaterializeResult:
    spec = spec_of(dataset)
    sql, params = latest_snapshot_query(spec, date.fromisoformat(config.as_of) if config.as_of else None)
    frame = warehouse.query(sql, params)
    if frame.is_empty():
        raise dg.Failure(f"{spec.scoring_relation} has no rows to publish: materialize its dbt model first")
    table, current = online_table(dataset), settings()
    version = publish_snapshot(current, lake, table, frame)
    by_day = frame.group_by(spec.snapshot).agg(pl.len().alias("customers")).sort(spec.snapshot, descending=True)
    also = f" (and to Redis, {snapshot_source(current, table).where()})" if current.online_store == "redis" else ""
    context.log.info(f"Published {frame.height} customers' latest features as {table} v{version}{also}")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": frame.height,
            "delta_version": version,
            "online_store": current.online_store,
            "dagster/uri": lake.uri(table),
            "latest_snapshot": str(frame[spec.snapshot].max()),
            "oldest_snapshot": str(frame[spec.snapshot].min()),
            "customers_by_snapshot_day": dg.MetadataValue.md(markdown_table(by_day)),
        }
    )


def read_requests(lake: Lake, dataset: Dataset, first: date, last: date) -> pl.DataFrame:
    table = requests_table(dataset)
    if not lake.exists(table):
        return pl.DataFrame(schema=SERVING_REQUESTS.schema)
    return lake.read_days(table, first, last)


def take_serving_log(context: dg.AssetExecutionContext, dataset: Dataset, lake: Lake) -> dg.MaterializeResult:
    """A day of the audit table: compacted into few files, summarized for the catalog."""
    day = date.fromisoformat(context.partition_key)
    table = requests_table(dataset)
    rows = read_requests(lake, dataset, day, day)
    compacted = lake.compact(table, day) if rows.height else 0
    summary = (
        rows.group_by("model_version", "role", "status")
        .agg(
            pl.len().alias("rows"),
            pl.col("request_id").n_unique().alias("requests"),
            pl.col("latency_ms").quantile(0.5).alias("latency_p50_ms"),
            pl.col("latency_ms").quantile(0.95).alias("latency_p95_ms"),
            pl.col("latency_ms").quantile(0.99).alias("latency_p99_ms"),
            pl.col("churn_probability").mean().alias("mean_score"),
        )
        .sort("rows", descending=True)
    )
    context.log.info(f"{day}: {rows.height} audit rows of {rows['request_id'].n_unique()} requests")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": rows.height,
            "requests": rows["request_id"].n_unique(),
            "errors": rows.filter(pl.col("status") == "error").height,
            "not_found": rows.filter(pl.col("status") == "not_found").height,
            "by_version_and_role": dg.MetadataValue.md(markdown_table(summary, 20) if rows.height else "no requests"),
            "files_compacted": compacted,
            "dagster/uri": lake.uri(table),
            "delta_version": lake.version(table) if lake.exists(table) else -1,
        }
    )


def report_online_drift(
    context: dg.AssetExecutionContext, config: Thresholds, dataset: Dataset, registry: ModelRegistry, lake: Lake
):
    """The day's served feature values and scores against the answering version's frozen reference."""
    from mlflow.exceptions import MlflowException

    from platform_assets.monitoring.drift import (
        IN_REFERENCE,
        feature_drift,
        judge_features,
        numeric_drift,
        served_outside_reference,
    )

    day = date.fromisoformat(context.partition_key)
    # The champion's answers: a canary's are the rollout report's to judge, a shadow's were never served.
    rows = read_requests(lake, dataset, day, day).filter((pl.col("role") == "champion") & (pl.col("status") == "ok"))
    if rows.height < MIN_DRIFT_ROWS:  # PSI on a handful of requests says nothing
        message = f"not evaluated: {rows.height} champion answers on {day} (at least {MIN_DRIFT_ROWS} needed)"
        yield dg.MaterializeResult(metadata={"dagster/row_count": 0, "status": message})
        yield dg.AssetCheckResult(
            check_name=ONLINE_DRIFT_CHECK, passed=False, severity=dg.AssetCheckSeverity.WARN, description=message
        )
        return
    version = registry.by_number(rows["model_version"].mode().sort()[0])
    served = rows.filter(pl.col("model_version") == version.version)
    try:
        reference = registry.reference_profile(version.run_id)
    except MlflowException:
        message = f"not evaluated: v{version.version} logged no reference profile to compare with"
        yield dg.MaterializeResult(metadata={"dagster/row_count": 0, "status": message})
        yield dg.AssetCheckResult(
            check_name=ONLINE_DRIFT_CHECK, passed=False, severity=dg.AssetCheckSeverity.WARN, description=message
        )
        return
    features = list(spec_of(dataset).features)
    schema = pl.scan_delta(
        lake.uri(online_table(dataset)), storage_options=lake.storage_options or None
    ).collect_schema()
    compared, overlap = served_outside_reference(reference, served)
    in_reference = overlap is not None and compared.is_empty()  # all the reference's own rows: figures for information
    if overlap and not in_reference and compared.height < MIN_DRIFT_ROWS:
        message = (
            f"not evaluated: {overlap}, and only {compared.height} other champion answers on {day} "
            f"(at least {MIN_DRIFT_ROWS} needed)"
        )
        yield dg.MaterializeResult(metadata={"dagster/row_count": 0, "status": message})
        yield dg.AssetCheckResult(
            check_name=ONLINE_DRIFT_CHECK, passed=False, severity=dg.AssetCheckSeverity.WARN, description=message
        )
        return
    judged = served if in_reference else compared
    values = judged.select(
        pl.col("features").str.json_decode(pl.Struct({f: schema[f] for f in features})).struct.unnest()
    )
    verdict = judge_features(feature_drift(reference, values, features), config)
    score = numeric_drift(reference["score"], judged["churn_probability"])
    score_level = pl.select(config.level(pl.lit(score["psi"]), pl.lit(0.0))).item()
    report = verdict.report.with_columns(
        *([pl.lit(IN_REFERENCE).alias("level")] if in_reference else []),
        pl.lit(version.version).alias("model_version"),
        pl.lit(day).alias("ds"),
    )
    delta_version = lake.replace_days(dataset.lake_table(ONLINE_DRIFT), report, day, day)
    figures = [*verdict.reasons, f"score PSI {score['psi']:.3f} ({score_level})"]
    if in_reference:
        severity = IN_REFERENCE
        description = (
            f"this day's answers are part of the reference, not a drift comparison: {overlap}; "
            f"figures for information only ({'; '.join(figures)})"
        )
    else:
        severity = (
            "error"
            if "error" in (verdict.severity, score_level)
            else "warn"
            if "warn" in (verdict.severity, score_level)
            else "ok"
        )
        compared_only = f"compared {compared.height} of {served.height} answers ({overlap}): " if overlap else ""
        description = compared_only + "; ".join(figures)
    yield dg.MaterializeResult(
        metadata={
            "dagster/row_count": report.height,
            "served_rows": served.height,
            "compared_rows": 0 if in_reference else judged.height,
            "comparison": overlap or "against the reference",
            "model_version": version.version,
            "drifted_features": verdict.drifted.height,
            "max_psi": float(report["psi"].max()),
            "score_psi": score["psi"],
            "mean_score": score["current_mean"],
            "drift": dg.MetadataValue.md(
                markdown_table(
                    report.select("feature", "level", "psi", "effect_size", "current_mean").sort(
                        "psi", descending=True
                    ),
                    50,
                )
            ),
            "dagster/uri": lake.uri(dataset.lake_table(ONLINE_DRIFT)),
            "delta_version": delta_version,
        }
    )
    yield level_check(
        ONLINE_DRIFT_CHECK,
        severity,
        description,
        {"partition": day.isoformat(), "model_version": version.version, "served_rows": served.height},
    )


def with_outcomes(rows: pl.DataFrame, dataset: Dataset, warehouse: Warehouse, registry: ModelRegistry) -> pl.DataFrame:
    """Audit rows with ``churned`` where the outcome has matured, null where it has not or where the scoring
    version trained on that snapshot (from the split on its MLflow run)."""
    from platform_assets.ml.training import TimeSplit

    outcome = spec_of(dataset).outcome
    days = rows["feature_snapshot_date"].drop_nulls().unique().to_list()
    known = warehouse.query(
        f"select cast({outcome.entity} as varchar) as customer_id, {outcome.snapshot} as feature_snapshot_date, "
        f"{outcome.label} as churned from {outcome.relation} where list_contains(?, {outcome.snapshot})",
        [days],
    ).with_columns(pl.col("churned").cast(pl.Boolean))
    joined = rows.join(known, on=["customer_id", "feature_snapshot_date"], how="left")
    parts = []
    for version in joined["model_version"].unique().to_list():
        part = joined.filter(pl.col("model_version") == version)
        recorded = registry.split(registry.by_number(version).run_id)
        trained = (
            TimeSplit.from_json(recorded).trained_on("feature_snapshot_date", part.columns)
            if recorded
            else pl.lit(True)
        )
        parts.append(part.with_columns(pl.when(trained).then(None).otherwise(pl.col("churned")).alias("churned")))
    return pl.concat(parts) if parts else joined


def report_rollout(
    context: dg.AssetExecutionContext, dataset: Dataset, warehouse: Warehouse, registry: ModelRegistry, lake: Lake
):
    """The online verdict of the live challenger: operational on the window, paired quality since it went live."""
    current = settings()
    # Each rule is the setting of its name: PLATFORM_ROLLOUT_<RULE>, and the serving SLA and error budget.
    rollout = ("min_requests", "auc_tolerance", "window_days", "alpha", "min_customers", "max_looks", "quality")
    rules = RolloutRules(
        latency_sla_ms=current.serving_latency_sla_ms,
        error_budget=current.serving_error_budget,
        **{rule: getattr(current, f"rollout_{rule}") for rule in rollout},
    )
    day = date.fromisoformat(context.partition_key)
    first = day - timedelta(days=rules.window_days - 1)
    champion = registry.version(CHAMPION)
    challenger = live_challenger(registry.version(CHALLENGER), champion)
    if challenger is None or current.serving_challenger_mode == "off":
        message = (
            "not evaluated: no live challenger (none, already champion, refused by the gate, or rolled back)"
            if challenger is None
            else "not evaluated: PLATFORM_SERVING_CHALLENGER_MODE is off, so the challenger gets no traffic"
        )
        yield dg.MaterializeResult(metadata={"action": "wait", "status": message})
        yield dg.AssetCheckResult(
            check_name=ROLLOUT_CHECK,
            passed=False,
            severity=dg.AssetCheckSeverity.WARN,
            description=message,
            metadata={"action": "wait", "partition": day.isoformat()},
        )
        return
    stage = stage_of(challenger, current.serving_challenger_mode)
    since = challenger.tags.get(LIVE_SINCE)
    live_from = min(first, date.fromisoformat(since[:10])) if since else first
    rows = read_requests(lake, dataset, live_from, day).filter(pl.col("route") == "id")
    rows = (
        with_outcomes(rows, dataset, warehouse, registry)
        if rows.height
        else rows.with_columns(churned=pl.lit(None, pl.Boolean))
    )
    ours, theirs = pl.col("model_version") == challenger.version, pl.col("model_version") == champion.version
    window = rows.filter(pl.col("ds") >= first)
    sides = {
        "champion": window.filter(theirs & (pl.col("role") == "champion")),
        "challenger": window.filter(ours & (pl.col("role") == ("shadow" if stage == "shadow" else "canary"))),
    }
    paired = paired_customers(rows.filter(theirs), rows.filter(ours))
    look = max(1, rows.filter(ours & pl.col("churned").is_not_null())["ds"].n_unique())
    served_days = sides["challenger"]["ds"].unique().len()
    verdict = judge_rollout(
        sides["champion"],
        sides["challenger"],
        served_days,
        rules,
        paired=paired,
        look=look,
        stage=stage,
        staged=current.serving_challenger_mode == "staged",
    )
    context.log.info(f"Rollout of v{challenger.version} against champion v{champion.version}: {verdict.summary}")
    common = {
        "action": verdict.action,
        "champion_version": champion.version,
        "challenger_version": challenger.version,
        "stage": stage,
        "window": f"{first}..{day}",
    }
    history = pl.DataFrame(ModelRegistry.history(challenger) or [{"at": "", "step": "", "verdict": "", "reason": ""}])
    yield dg.MaterializeResult(
        metadata={
            **common,
            "reasons": dg.MetadataValue.md("\n".join(f"- {r}" for r in verdict.reasons)),
            "comparison": dg.MetadataValue.md(markdown_table(verdict.figures)),
            "evidence": dg.MetadataValue.json({k: v for k, v in verdict.evidence.items() if v is not None}),
            "paired_customers": paired.height,
            "decision_history": dg.MetadataValue.md(markdown_table(history)),
            "rules": dg.MetadataValue.json(rules.__dict__),
        }
    )
    evaluated = not sides["challenger"].is_empty()
    yield dg.AssetCheckResult(
        check_name=ROLLOUT_CHECK,
        passed=evaluated and verdict.action != "rollback",
        severity=dg.AssetCheckSeverity.ERROR if verdict.action == "rollback" else dg.AssetCheckSeverity.WARN,
        description=verdict.summary[:1000],
        metadata={**common, "partition": day.isoformat()},
    )


@cache
def serving_assets(dataset: Dataset) -> tuple[dg.AssetsDefinition, ...]:
    """``online_features``, ``serving_log``, ``online_feature_drift`` and ``rollout_report`` of a dataset."""
    _, champion = model_assets(dataset)
    name = dataset.registered_model
    common = layer("serving")

    def day_check(check: str, asset: str, description: str) -> dg.AssetCheckSpec:
        """A check of each serving day that warns or fails without blocking what comes after."""
        return dg.AssetCheckSpec(
            check, asset=dataset.key(asset), description=description, blocking=False, partitions_def=serving_days()
        )

    @dg.asset(
        key=dataset.key("online_features"),
        deps=[dbt_key(dataset.scoring_model)],
        kinds=KINDS,
        description=(
            f"The online feature store of `{name}`: each customer's latest row of `{dataset.scoring_model}` (its "
            "declared features and snapshot day), one Delta table overwritten in one commit; its version names the "
            "snapshot (with PLATFORM_ONLINE_STORE=redis the same version is published to Redis too). The scoring "
            "API reads each new version once, without a restart."
        ),
        metadata={"lake_table": online_table(dataset)},
        **common,
    )
    def online_features(
        context: dg.AssetExecutionContext, config: OnlineFeaturesConfig, warehouse: Warehouse, lake: Lake
    ):
        return publish_online_features(context, config, dataset, warehouse, lake)

    @dg.asset(
        key=dataset.key("serving_log"),
        deps=[online_features, champion],
        partitions_def=serving_days(),
        kinds=KINDS,
        description=(
            f"Every online request of `{name}` on a day (UTC): one row per customer and model that scored it (the "
            "answer, and a shadow's silent score), with the features or their snapshot version, the model version "
            "and role, score, reasons and latency. The API appends it in micro-batches; materializing a day compacts "
            "its files and summarizes it."
        ),
        metadata=stored_in(SERVING_REQUESTS, dataset),
        **common,
    )
    def serving_log(context: dg.AssetExecutionContext, lake: Lake):
        return take_serving_log(context, dataset, lake)

    @dg.asset(
        key=dataset.key("online_feature_drift"),
        deps=[serving_log],
        partitions_def=serving_days(),
        kinds={*KINDS, "scipy"},
        description=(
            f"Drift of the features and scores `{name}` served online on a day, against the reference profile frozen "
            "with the version that answered: the batch report's statistics (PSI, effect size, KS or chi-square) on "
            "the served values."
        ),
        metadata={"lake_table": dataset.lake_table(ONLINE_DRIFT)},
        check_specs=[
            day_check(
                ONLINE_DRIFT_CHECK,
                "online_feature_drift",
                "The batch's feature drift rules (and score PSI) on online traffic.",
            )
        ],
        **common,
    )
    def online_feature_drift(
        context: dg.AssetExecutionContext, config: Thresholds, registry: ModelRegistry, lake: Lake
    ):
        yield from report_online_drift(context, config, dataset, registry.named(name), lake)

    @dg.asset(
        key=dataset.key("rollout_report"),
        deps=[serving_log, dbt_key(dataset.outcome_model)],
        partitions_def=serving_days(),
        kinds=KINDS,
        description=(
            f"Champion against challenger of `{name}` on live traffic over the rollout window: latency p95, error "
            "rate, score distribution, and ROC AUC on matured outcomes (rows a version trained on left out) or "
            "'not evaluated'. Its check fails when the challenger breaches the SLA, the error budget, or does worse; "
            "the rollout sensor then rolls it back, or promotes it once it has won."
        ),
        check_specs=[
            day_check(
                ROLLOUT_CHECK,
                "rollout_report",
                "ERROR when the challenger breaches the latency SLA or the error budget, or does worse.",
            )
        ],
        **common,
    )
    def rollout_report(context: dg.AssetExecutionContext, warehouse: Warehouse, registry: ModelRegistry, lake: Lake):
        yield from report_rollout(context, dataset, warehouse, registry.named(name), lake)

    return online_features, serving_log, online_feature_drift, rollout_report
