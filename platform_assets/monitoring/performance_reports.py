"""Performance once labels mature, and what the predictions are worth to the business.

Predictions of day P are judged on day P + horizon, when every customer has either
cancelled within the horizon or not. The outcome mirrors the dbt label
(``training_set.sql``): a cancellation in (P, P + horizon].
"""

from datetime import date, timedelta

import dagster as dg
import numpy as np
import polars as pl
from pydantic import Field

from platform_assets.metadata import OWNER, markdown_table, table_schema
from platform_assets.model_assets import FeatureSource
from platform_assets.partitions import daily_partitions
from platform_assets.predictions import PREDICTIONS, churn_predictions
from resources.lake import Lake
from resources.model_registry import ModelRegistry
from resources.warehouse import Warehouse

MODEL_PERFORMANCE = "monitoring/model_performance"
BUSINESS_IMPACT = "monitoring/business_impact"
PERFORMANCE_CHECK = "performance_decay"
FAIRNESS_CHECK = "fairness"
OUTCOMES = "raw/cancellations"
PERFORMANCE_COLUMNS = {
    "ds": ("Date", "Day the labels matured (partition)."),
    "scored_on": ("Date", "Day the evaluated predictions were made."),
    "model_version": ("String", "Model version that made them."),
    "roc_auc": ("Float64", "ROC AUC against what happened."),
    "pr_auc": ("Float64", "Average precision."),
    "calibration_error": ("Float64", "Expected calibration error over score deciles."),
    "brier": ("Float64", "Brier score."),
    "base_rate": ("Float64", "Share of customers who churned."),
    "rows": ("Float64", "Predictions evaluated."),
    "validation_roc_auc": ("Float64", "The model card's validation ROC AUC."),
    "segment_gap": ("Float64", "Largest ROC AUC gap across plans, regions or age bands."),
}


class PerformanceConfig(FeatureSource):
    auc_tolerance: float = Field(
        default=0.05, description="ERROR when ROC AUC falls more than this below the model card's validation figure."
    )
    max_segment_gap: float = Field(default=0.15, description="WARN when a segment's ROC AUC gap passes this.")
    history_days: int = Field(default=60, description="Days of history shown in the chart.")


def matured(lake: Lake, day: date, horizon: int) -> tuple[date, pl.DataFrame]:
    """Predictions made ``horizon`` days before ``day``, each with its outcome (empty if none)."""
    scored_on = day - timedelta(days=horizon)
    predictions = lake.read_days(PREDICTIONS, scored_on) if lake.exists(PREDICTIONS) else pl.DataFrame()
    if predictions.is_empty():
        return scored_on, predictions
    churned = (
        lake.scan(OUTCOMES)
        .filter(pl.col("cancelled_on") > scored_on, pl.col("cancelled_on") <= day)
        .select("customer_id", pl.lit(True).alias("churned"))
        .unique()
        .collect()
    )
    return scored_on, predictions.join(churned, on="customer_id", how="left").with_columns(
        pl.col("churned").fill_null(False)
    )


@dg.asset(
    partitions_def=daily_partitions,
    deps=[churn_predictions, dg.AssetKey("raw_cancellations")],
    group_name="monitoring",
    kinds={"delta", "polars"},
    owners=[OWNER],
    tags={"layer": "monitoring"},
    description=(
        "How the predictions of 30 days ago did, now that their labels have matured: ROC AUC, PR AUC, calibration "
        "error and the largest ROC AUC gap across segments, against the model card's validation figures. One row "
        "per day in Delta; the chart shows the trend."
    ),
    metadata={"lake_table": MODEL_PERFORMANCE, "dagster/column_schema": table_schema(PERFORMANCE_COLUMNS)},
    check_specs=[
        dg.AssetCheckSpec(
            PERFORMANCE_CHECK,
            asset="model_performance",
            description="ERROR when matured ROC AUC falls below the validation ROC AUC minus auc_tolerance.",
            partitions_def=daily_partitions,
        ),
        dg.AssetCheckSpec(
            FAIRNESS_CHECK,
            asset="model_performance",
            description="WARN when ROC AUC differs across plans, regions or age bands by more than max_segment_gap.",
            partitions_def=daily_partitions,
        ),
    ],
)
def model_performance(
    context: dg.AssetExecutionContext,
    config: PerformanceConfig,
    warehouse: Warehouse,
    registry: ModelRegistry,
    lake: Lake,
):
    from platform_assets.ml.evaluation import largest_gap, metrics, segment_performance
    from platform_assets.plots import as_metadata, metric_over_time, png_bytes

    day = date.fromisoformat(context.partition_key)
    spec = config.spec()
    scored_on, outcomes = matured(lake, day, spec.label_horizon_days)
    if outcomes.is_empty():
        context.log.info(f"{day}: no predictions from {scored_on} to evaluate yet")
        yield dg.MaterializeResult(metadata={"evaluated_predictions_of": scored_on.isoformat(), "dagster/row_count": 0})
        for name in (PERFORMANCE_CHECK, FAIRNESS_CHECK):
            yield dg.AssetCheckResult(
                check_name=name,
                passed=True,
                description=f"nothing to evaluate: no predictions from {scored_on}",
                metadata={"partition": day.isoformat()},
            )
        return

    version = registry.by_number(outcomes["model_version"][0])
    validation = registry.validation_metrics(version.run_id)
    y = outcomes["churned"].cast(pl.Int64).to_numpy()
    scores = metrics(y, outcomes["churn_probability"].to_numpy())
    segments_present = [s for s in config.segments if s in spec.features]
    segment_frame = warehouse.query(
        f"select {', '.join([spec.entity, *segments_present])} from {spec.scoring_relation} where {spec.snapshot} = ?",
        [scored_on],
    ).join(outcomes, left_on=spec.entity, right_on="customer_id")
    segments = segment_performance(segment_frame, "churned", "churn_probability", segments_present)
    gap = largest_gap(segments)
    row = pl.DataFrame(
        [
            {
                "ds": day,
                "scored_on": scored_on,
                "model_version": version.version,
                **{k: scores[k] for k in ("roc_auc", "pr_auc", "calibration_error", "brier", "base_rate", "rows")},
                "validation_roc_auc": validation.get("roc_auc", float("nan")),
                "segment_gap": float(gap["gap"]),
            }
        ]
    )
    delta_version = lake.replace_days(MODEL_PERFORMANCE, row, day, day)
    history = lake.scan(MODEL_PERFORMANCE).filter(pl.col("ds") > day - timedelta(days=config.history_days)).collect()
    floor = validation.get("roc_auc", 0.0) - config.auc_tolerance
    context.log.info(
        f"{day}: predictions of {scored_on} by v{version.version}: ROC AUC {scores['roc_auc']:.3f} "
        f"(validation {validation.get('roc_auc', float('nan')):.3f}, floor {floor:.3f})"
    )
    yield dg.MaterializeResult(
        metadata={
            "evaluated_predictions_of": scored_on.isoformat(),
            "model_version": version.version,
            "dagster/row_count": int(scores["rows"]),
            **{
                k: dg.MetadataValue.float(float(scores[k]))
                for k in ("roc_auc", "pr_auc", "calibration_error", "brier", "base_rate")
            },
            "validation_roc_auc": validation.get("roc_auc", float("nan")),
            "segments": dg.MetadataValue.md(markdown_table(segments, 40) if segments.height else "too few churners"),
            "roc_auc_over_time": as_metadata(
                png_bytes(metric_over_time(history, "roc_auc", "ROC AUC of matured predictions", [floor]))
            ),
            "dagster/uri": lake.uri(MODEL_PERFORMANCE),
            "delta_version": delta_version,
        }
    )
    decayed = bool(np.isfinite(scores["roc_auc"]) and scores["roc_auc"] < floor)
    yield dg.AssetCheckResult(
        check_name=PERFORMANCE_CHECK,
        passed=not decayed,
        severity=dg.AssetCheckSeverity.ERROR,
        description=f"ROC AUC {scores['roc_auc']:.3f} on predictions of {scored_on} vs floor {floor:.3f} "
        f"(validation {validation.get('roc_auc', float('nan')):.3f} - tolerance {config.auc_tolerance})",
        metadata={
            "partition": day.isoformat(),
            "model_version": version.version,
            "roc_auc": float(scores["roc_auc"]),
            "floor": floor,
            "calibration_error": float(scores["calibration_error"]),
        },
    )
    yield dg.AssetCheckResult(
        check_name=FAIRNESS_CHECK,
        passed=gap["gap"] <= config.max_segment_gap,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"largest ROC AUC gap {gap['gap']:.3f} across {gap['segment']} "
        f"(best {gap['best']}, worst {gap['worst']}; bound {config.max_segment_gap})",
        metadata={"partition": day.isoformat(), "segment_gap": float(gap["gap"]), "bound": config.max_segment_gap},
    )


class BusinessConfig(FeatureSource):
    contact_top_k: int = Field(default=500, description="How many of the highest-risk customers to contact a day.")
    offer_cost: float = Field(default=15.0, description="Cost of one retention offer (EUR).")
    customer_value: float = Field(default=400.0, description="Value of keeping a customer who would churn (EUR).")
    offer_success_rate: float = Field(default=0.3, description="Share of contacted churners an offer keeps.")


IMPACT_COLUMNS = {
    "ds": (pl.Date, "Day scored (partition)."),
    "customers": (pl.Int64, "Customers scored that day."),
    "expected_saving": (pl.Float64, "Expected net saving of contacting the top k (EUR)."),
    "scored_on": (pl.Date, "Day of the matured predictions evaluated."),
    "lift_top_decile": (pl.Float64, "Churn rate in the top decile over the overall rate, matured."),
    "realized_saving": (pl.Float64, "Net saving the top k would have achieved (EUR), matured."),
    "random_saving": (pl.Float64, "The same for k random customers (EUR)."),
}
IMPACT_SCHEMA = {name: dtype for name, (dtype, _) in IMPACT_COLUMNS.items()}


def campaign_value(probability: np.ndarray, config: BusinessConfig) -> float:
    """Expected net saving of contacting the top-k customers by probability."""
    top = np.sort(probability)[::-1][: config.contact_top_k]
    return float(top.sum() * config.offer_success_rate * config.customer_value - len(top) * config.offer_cost)


@dg.asset(
    partitions_def=daily_partitions,
    deps=[churn_predictions, dg.AssetKey("raw_cancellations")],
    group_name="monitoring",
    kinds={"delta", "polars"},
    owners=[OWNER],
    tags={"layer": "monitoring"},
    description=(
        "What the predictions are worth: the expected saving of contacting today's top-k customers, and for the "
        "predictions of 30 days ago the lift in the top decile and the saving actually achieved against random "
        "targeting, with a configurable cost matrix (offer cost, customer value, offer success rate)."
    ),
    metadata={"lake_table": BUSINESS_IMPACT, "dagster/column_schema": table_schema(IMPACT_COLUMNS)},
)
def business_impact(context: dg.AssetExecutionContext, config: BusinessConfig, lake: Lake):
    from platform_assets.ml.evaluation import lift_at
    from platform_assets.plots import as_metadata, metric_over_time, png_bytes

    day = date.fromisoformat(context.partition_key)
    spec = config.spec()
    today = lake.read_days(PREDICTIONS, day)
    if today.is_empty():
        raise dg.Failure(f"No predictions for {day}: materialize churn_predictions for it first")
    expected = campaign_value(today["churn_probability"].to_numpy(), config)
    scored_on, outcomes = matured(lake, day, spec.label_horizon_days)
    realized = {"scored_on": scored_on, "lift_top_decile": None, "realized_saving": None, "random_saving": None}
    if not outcomes.is_empty():
        y = outcomes["churned"].cast(pl.Int64).to_numpy()
        p = outcomes["churn_probability"].to_numpy()
        k = min(config.contact_top_k, len(p))
        caught = y[np.argsort(-p, kind="stable")[:k]].sum()
        value = config.offer_success_rate * config.customer_value
        realized |= {
            "lift_top_decile": lift_at(y, p, 0.1),
            "realized_saving": float(caught * value - k * config.offer_cost),
            "random_saving": float(k * y.mean() * value - k * config.offer_cost),
        }
    row = pl.DataFrame(
        [{"ds": day, "customers": today.height, "expected_saving": expected, **realized}], schema=IMPACT_SCHEMA
    )
    delta_version = lake.replace_days(BUSINESS_IMPACT, row, day, day)
    history = lake.scan(BUSINESS_IMPACT).filter(pl.col("ds") > day - timedelta(days=60)).collect()
    context.log.info(f"{day}: contacting the top {config.contact_top_k} is worth {expected:,.0f} EUR (expected)")
    return dg.MaterializeResult(
        metadata={
            "expected_saving_eur": expected,
            "contact_top_k": config.contact_top_k,
            "cost_matrix": dg.MetadataValue.json(
                {
                    "offer_cost": config.offer_cost,
                    "customer_value": config.customer_value,
                    "offer_success_rate": config.offer_success_rate,
                }
            ),
            "matured_predictions_of": scored_on.isoformat(),
            "lift_top_decile": realized["lift_top_decile"]
            if realized["lift_top_decile"] is not None
            else "not matured",
            "realized_saving_eur": realized["realized_saving"]
            if realized["realized_saving"] is not None
            else "not matured",
            "random_targeting_saving_eur": realized["random_saving"]
            if realized["random_saving"] is not None
            else "not matured",
            "expected_saving_over_time": as_metadata(
                png_bytes(metric_over_time(history, "expected_saving", "Expected saving of the daily campaign (EUR)"))
            ),
            "dagster/uri": lake.uri(BUSINESS_IMPACT),
            "delta_version": delta_version,
        }
    )
