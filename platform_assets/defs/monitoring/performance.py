"""Performance once labels mature, and what the predictions are worth to the business.

On day D, the predictions judged are those of the latest snapshot at or before
D - horizon (the label's ``horizon_days``), whatever the snapshot cadence (weekly
snapshots under a 90-day horizon are judged 91 days on), against the outcome the
dataset's declared outcome model (dbt) holds for that snapshot. Rows the scoring
version may have learned (from the split recorded on its MLflow run) are left out:
on a time split, every snapshot within the horizon of a training snapshot, whose
label window overlaps a training label window (``TimeSplit.trained_on``), so a later
day is judged from the last training snapshot plus the horizon on; on a split column,
the ``train`` entities on every day, so later days are judged on the validation
entities. The report says which rows were judged, and when they are the model's
validation set again. Rows a decision treated are left out too: when the outcome
model declares a ``treated`` column (``churn_outcomes.treated_within_horizon``: a
retention contact acted within the label horizon) and ``treated_labels`` is
``exclude`` (the dbt var's default), those customers' outcomes may be the campaign's
doing, so they are not the model's to be judged on; the holdout arm, never contacted,
stays in. How many were left out, and why, is in the metadata. When too few rows have
matured, or a figure is not finite, the checks warn and say so: they never pass on
nothing.
"""

from datetime import timedelta
from functools import cache
from typing import TYPE_CHECKING

import dagster as dg
import numpy as np
import polars as pl
from pydantic import Field

from platform_assets.defs.datasets import dbt_key, performance_partitions, spec_of
from platform_assets.defs.monitoring.reports import ReportDay, report_asset
from platform_assets.defs.predictions.assets import predictions_asset
from platform_assets.economics import OfferEconomics
from platform_assets.metadata import markdown_table
from platform_assets.ml.feature_spec import Dataset
from platform_assets.monitoring.checks import PERFORMANCE_CHECK
from platform_assets.monitoring.outcomes import OUTCOME, matured
from platform_assets.partitions import daily_partitions
from platform_assets.tables import BUSINESS_IMPACT, MODEL_PERFORMANCE
from resources.settings import settings

if TYPE_CHECKING:
    pass

FAIRNESS_CHECK = "fairness"


class PerformanceConfig(dg.Config):
    auc_tolerance: float = Field(
        default=0.05, description="ERROR when ROC AUC falls more than this below the model card's validation figure."
    )
    max_segment_gap: float = Field(default=0.15, description="WARN when a segment's ROC AUC gap passes this.")
    min_rows: int = Field(default=200, description="Fewest matured rows a ROC AUC is reported on (else WARN).")
    min_positives: int = Field(default=20, description="Fewest matured positives and negatives (else WARN).")
    history_days: int = Field(default=60, description="Days of history shown in the chart.")


def _unevaluable(scores: dict, rows: int, config: PerformanceConfig) -> str | None:
    """Why the matured figures cannot be trusted, or None."""
    positives = round(scores["base_rate"] * rows) if rows else 0
    if rows < config.min_rows:
        return f"only {rows} matured rows (at least {config.min_rows} needed)"
    if min(positives, rows - positives) < config.min_positives:
        return f"{positives} positive and {rows - positives} negative outcomes (at least {config.min_positives} each)"
    if not np.isfinite(scores["roc_auc"]):
        return "ROC AUC is not finite"
    return None


def report_performance(context: dg.AssetExecutionContext, config: PerformanceConfig, on: ReportDay):
    """Judge the predictions whose outcome matured today against the model card's validation figure."""
    from platform_assets.ml.evaluation import judge_fairness, largest_gap, metrics, segment_performance
    from platform_assets.plots import as_metadata, metric_over_time, png_bytes

    day, spec, warehouse, registry, lake = on.day, on.spec, on.warehouse, on.registry, on.lake
    table = on.table(MODEL_PERFORMANCE)
    found = matured(lake, warehouse, registry, on.dataset, spec, day)
    scored_on, outcomes, note = found.scored_on, found.rows, found.note
    scores = (
        metrics(outcomes[OUTCOME].cast(pl.Int64).to_numpy(), outcomes["churn_probability"].to_numpy())
        if not outcomes.is_empty()
        else None
    )
    why_not = note if scores is None else _unevaluable(scores, outcomes.height, config)
    if why_not:
        message = f"not evaluated: {why_not}" + (f" ({note})" if note and note != why_not else "")
        context.log.warning(f"{day}: predictions of {scored_on}: {message}")
        yield dg.MaterializeResult(
            metadata={
                "dagster/row_count": 0,
                "status": message,
                **found.metadata(),
            }
        )
        for name in (PERFORMANCE_CHECK, FAIRNESS_CHECK):
            yield dg.AssetCheckResult(
                check_name=name,
                passed=False,
                severity=dg.AssetCheckSeverity.WARN,
                description=message,
                metadata={"partition": day.isoformat(), "evaluated_predictions_of": scored_on.isoformat()},
            )
        return

    version = registry.by_number(outcomes["model_version"][0])
    validation = registry.validation_metrics(version.run_id)
    segment_frame = warehouse.query(
        f"select {', '.join(dict.fromkeys([spec.entity, *spec.segments]))} from {spec.scoring_relation} "
        f"where {spec.snapshot} = ?",
        [scored_on],
    ).join(outcomes, on=spec.entity)
    minimum = settings().fairness_min_per_class
    segments = segment_performance(
        segment_frame, OUTCOME, "churn_probability", list(spec.segments), min_per_class=minimum
    )
    gap = largest_gap(segments, spec.segments, minimum)
    row = pl.DataFrame(
        [
            {
                "ds": day,
                "scored_on": scored_on,
                "model_version": version.version,
                **{k: scores[k] for k in ("roc_auc", "pr_auc", "calibration_error", "brier", "base_rate", "rows")},
                "validation_roc_auc": validation.get("roc_auc", float("nan")),
                "segment_gap": gap["gap"],
            }
        ],
        schema_overrides={"segment_gap": pl.Float64},
    )
    delta_version = lake.replace_days(table, row, day, day)
    history = lake.scan(table).filter(pl.col("ds") > day - timedelta(days=config.history_days)).collect()
    floor = validation.get("roc_auc", float("nan")) - config.auc_tolerance
    context.log.info(
        f"{day}: predictions of {scored_on} by v{version.version}: ROC AUC {scores['roc_auc']:.3f} "
        f"(validation {validation.get('roc_auc', float('nan')):.3f}, floor {floor:.3f}) on {found.evaluated}"
        + (f"; {note}" if note else "")
    )
    yield dg.MaterializeResult(
        metadata={
            "model_version": version.version,
            "dagster/row_count": int(scores["rows"]),
            **{
                k: dg.MetadataValue.float(float(scores[k]))
                for k in ("roc_auc", "pr_auc", "calibration_error", "brier", "base_rate")
            },
            "validation_roc_auc": validation.get("roc_auc", float("nan")),
            "left_out": note or "none",
            **found.metadata(),
            "segments": dg.MetadataValue.md(markdown_table(segments, 40) if segments.height else gap["reason"]),
            "roc_auc_over_time": as_metadata(
                png_bytes(metric_over_time(history, "roc_auc", "ROC AUC of matured predictions", [floor]))
            ),
            "dagster/uri": lake.uri(table),
            "delta_version": delta_version,
        }
    )
    judged = bool(np.isfinite(floor))
    decayed = judged and scores["roc_auc"] < floor
    yield dg.AssetCheckResult(
        check_name=PERFORMANCE_CHECK,
        passed=judged and not decayed,
        severity=dg.AssetCheckSeverity.ERROR if decayed else dg.AssetCheckSeverity.WARN,
        description=(
            f"ROC AUC {scores['roc_auc']:.3f} on {int(scores['rows'])} matured predictions of {scored_on} vs floor "
            f"{floor:.3f} (validation {validation.get('roc_auc', float('nan')):.3f} - tolerance {config.auc_tolerance}); "
            f"rows: {found.evaluated}"
            if judged
            else f"not evaluated: v{version.version} recorded no validation ROC AUC to compare with"
        ),
        metadata={
            "partition": day.isoformat(),
            "model_version": version.version,
            "roc_auc": float(scores["roc_auc"]),
            "floor": floor,
            "calibration_error": float(scores["calibration_error"]),
            "evaluated_rows": found.evaluated,
        },
    )
    fair, text = judge_fairness(gap, config.max_segment_gap)
    yield dg.AssetCheckResult(
        check_name=FAIRNESS_CHECK,
        passed=fair,
        severity=dg.AssetCheckSeverity.WARN,
        description=text,
        metadata={
            "partition": day.isoformat(),
            "segments": dg.MetadataValue.json(list(spec.segments)),
            "segment_gap": float(gap["gap"]) if gap["gap"] is not None else "not evaluated",
            "bound": config.max_segment_gap,
        },
    )


class BusinessConfig(OfferEconomics):
    contact_top_k: int = Field(default=500, description="How many of the highest-risk customers to contact a day.")
    customer_value: float = Field(default=400.0, description="Value of keeping a customer who would churn (EUR).")


def campaign_value(probability: np.ndarray, config: BusinessConfig) -> float:
    """Expected net saving of contacting the top-k customers by probability."""
    top = np.sort(probability)[::-1][: config.contact_top_k]
    return float(top.sum() * config.offer_effect * config.customer_value - len(top) * config.offer_cost)


def report_business_impact(context: dg.AssetExecutionContext, config: BusinessConfig, on: ReportDay):
    """The expected value of today's campaign, and the value the matured predictions achieved."""
    from platform_assets.ml.evaluation import lift_at
    from platform_assets.plots import as_metadata, metric_over_time, png_bytes

    day, lake = on.day, on.lake
    table = on.table(BUSINESS_IMPACT)
    today = on.predictions()
    expected = campaign_value(today["churn_probability"].to_numpy(), config)
    found = matured(lake, on.warehouse, on.registry, on.dataset, on.spec, day)
    scored_on, outcomes, note = found.scored_on, found.rows, found.note
    realized = {"scored_on": scored_on, "lift_top_decile": None, "realized_saving": None, "random_saving": None}
    if not outcomes.is_empty():
        y = outcomes[OUTCOME].cast(pl.Int64).to_numpy()
        p = outcomes["churn_probability"].to_numpy()
        k = min(config.contact_top_k, len(p))
        caught = y[np.argsort(-p, kind="stable")[:k]].sum()
        value = config.offer_effect * config.customer_value
        realized |= {
            "lift_top_decile": lift_at(y, p, 0.1),
            "realized_saving": float(caught * value - k * config.offer_cost),
            "random_saving": float(k * y.mean() * value - k * config.offer_cost),
        }
    row = pl.DataFrame(
        [{"ds": day, "customers": today.height, "expected_saving": expected, **realized}], schema=BUSINESS_IMPACT.schema
    )
    delta_version = lake.replace_days(table, row, day, day)
    history = lake.scan(table).filter(pl.col("ds") > day - timedelta(days=60)).collect()
    context.log.info(f"{day}: contacting the top {config.contact_top_k} is worth {expected:,.0f} EUR (expected)")
    yield dg.MaterializeResult(
        metadata={
            "expected_saving_eur": expected,
            "contact_top_k": config.contact_top_k,
            "cost_matrix": dg.MetadataValue.json(
                {
                    "offer_cost": config.offer_cost,
                    "customer_value": config.customer_value,
                    "offer_effect": config.offer_effect,
                }
            ),
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
            "matured_note": note or "none",
            **found.metadata(),
            "dagster/uri": lake.uri(table),
            "delta_version": delta_version,
        }
    )


@cache
def performance_assets(dataset: Dataset) -> tuple[dg.AssetsDefinition, dg.AssetsDefinition]:
    """``model_performance`` and ``business_impact`` of a declared dataset, downstream of its outcome model."""
    predictions = predictions_asset(dataset)
    outcome = dbt_key(dataset.outcome_model)
    matures = performance_partitions(dataset)
    horizon = spec_of(dataset).outcome.horizon_days
    # Day D judges the predictions of D - horizon (none for the first horizon of days).
    scored = dg.TimeWindowPartitionMapping(
        start_offset=-horizon, end_offset=-horizon, allow_nonexistent_upstream_partitions=True
    )

    model_performance = report_asset(
        dataset,
        "model_performance",
        MODEL_PERFORMANCE,
        PerformanceConfig,
        report_performance,
        partitions_def=matures,
        deps=[dg.AssetDep(predictions, partition_mapping=scored), outcome],
        kinds={"delta", "polars"},
        description=(
            f"How the `{dataset.registered_model}` predictions of the latest snapshot at least one label horizon "
            f"ago did, now that their outcome has matured in the dbt model `{dataset.outcome_model}`: ROC AUC, PR "
            "AUC, calibration error and the largest ROC AUC gap across declared segments, against the model card's "
            "validation figures, on rows the model did not learn (a time split: snapshots at least the horizon "
            "from every training snapshot; a split column: its validation entities, on any later day; "
            "`evaluated_rows` says which, and when they are its validation set again) and no decision treated "
            "(the outcome model's `treated` column, e.g. "
            "customers a retention contact acted on within the horizon; dbt var `treated_labels`), counted in "
            "`treated_left_out`. One row per day in Delta; the chart shows the trend."
        ),
        checks=[
            (
                PERFORMANCE_CHECK,
                "ERROR when matured ROC AUC falls below the validation ROC AUC minus auc_tolerance; WARN, saying "
                "why, when too few rows have matured to tell.",
            ),
            (
                FAIRNESS_CHECK,
                "WARN when ROC AUC differs across the values of a declared segment by more than max_segment_gap, or "
                "when no segment could be evaluated.",
            ),
        ],
    )
    business_impact = report_asset(
        dataset,
        "business_impact",
        BUSINESS_IMPACT,
        BusinessConfig,
        report_business_impact,
        partitions_def=daily_partitions(),
        deps=[predictions, outcome],
        kinds={"delta", "polars"},
        description=(
            f"What the `{dataset.registered_model}` predictions are worth: the expected saving of contacting "
            "today's top-k, and for the predictions of the latest snapshot at least one label horizon ago (the "
            "rows model_performance judges) the lift in the top decile and the "
            "saving actually achieved against random targeting, with a configurable cost matrix."
        ),
    )
    return model_performance, business_impact
