"""Performance once labels mature, and what the predictions are worth to the business.

Predictions of day P are judged on day P + horizon, against the outcome the dataset's
declared outcome model (dbt) holds for P; the horizon is its label's ``horizon_days``.
Rows the scoring model version trained on (from the split recorded on its MLflow run)
are left out, and so are rows a decision treated: when the outcome model declares a
``treated`` column (``churn_outcomes.treated_within_horizon``: a retention contact acted
within the label horizon) and ``treated_labels`` is ``exclude`` (the dbt var's default),
those customers' outcomes may be the campaign's doing, so they are not the model's to be
judged on; the holdout arm, never contacted, stays in. How many were left out, and why,
is in the metadata. When too few rows have matured, or a figure is not finite, the checks
warn and say so: they never pass on nothing.
"""

from dataclasses import dataclass
from datetime import date, timedelta
from functools import cache

import dagster as dg
import numpy as np
import polars as pl
from pydantic import Field

from platform_assets.datasets import DEFAULT, dbt_key, performance_partitions, spec_of
from platform_assets.metadata import OWNER, markdown_table, table_schema
from platform_assets.ml.feature_spec import Dataset, FeatureSpec, LabelledModel
from platform_assets.partitions import daily_partitions
from platform_assets.predictions import PREDICTIONS, predictions_asset
from resources.lake import Lake
from resources.model_registry import ModelRegistry
from resources.settings import settings
from resources.warehouse import Warehouse

MODEL_PERFORMANCE = "monitoring/model_performance"
BUSINESS_IMPACT = "monitoring/business_impact"
PERFORMANCE_CHECK = "performance_decay"
FAIRNESS_CHECK = "fairness"
OUTCOME = "churned"
PERFORMANCE_COLUMNS = {
    "ds": ("Date", "Day the labels matured (partition)."),
    "scored_on": ("Date", "Day the evaluated predictions were made."),
    "model_version": ("String", "Model version that made them."),
    "roc_auc": ("Float64", "ROC AUC against what happened."),
    "pr_auc": ("Float64", "Average precision."),
    "calibration_error": ("Float64", "Expected calibration error over score deciles."),
    "brier": ("Float64", "Brier score."),
    "base_rate": ("Float64", "Share of rows whose label was positive."),
    "rows": ("Float64", "Predictions evaluated (matured, not treated by a decision, not trained on)."),
    "validation_roc_auc": ("Float64", "The model card's validation ROC AUC."),
    "segment_gap": ("Float64", "Largest ROC AUC gap across the declared segments (empty if not evaluated)."),
}


class PerformanceConfig(dg.Config):
    auc_tolerance: float = Field(
        default=0.05, description="ERROR when ROC AUC falls more than this below the model card's validation figure."
    )
    max_segment_gap: float = Field(default=0.15, description="WARN when a segment's ROC AUC gap passes this.")
    min_rows: int = Field(default=200, description="Fewest matured rows a ROC AUC is reported on (else WARN).")
    min_positives: int = Field(default=20, description="Fewest matured positives and negatives (else WARN).")
    history_days: int = Field(default=60, description="Days of history shown in the chart.")


@dataclass(frozen=True)
class Matured:
    """The matured predictions of one day to judge, and what was left out of them.

    ``note`` says what was left out or missing (empty when nothing was); ``treated_left_out``
    counts the matured rows left out because a decision treated them, ``treatment`` says
    what the outcome model declares about treated rows and what became of them.
    """

    scored_on: date
    rows: pl.DataFrame
    note: str
    treatment: str
    treated_left_out: int = 0

    def treated_metadata(self) -> dict:
        return {"treated_left_out": self.treated_left_out, "treated_rows": self.treatment}


def _treatment(outcome: LabelledModel) -> str:
    """What the outcome model declares about treated rows, and what monitoring does with them."""
    if outcome.treated is None:
        return f"not declared: {outcome.name} has no treated column, every matured row is judged"
    if outcome.excludes_treated:
        return (
            f"left out ({outcome.name}.{outcome.treated}, treated_labels: exclude): a decision acted within their "
            "label horizon, so their outcome may be its doing; the holdout arm stays in"
        )
    return f"judged with the rest ({outcome.name}.{outcome.treated}, treated_labels: keep)"


def matured(
    lake: Lake, warehouse: Warehouse, registry: ModelRegistry, dataset: Dataset, spec: FeatureSpec, day: date
) -> Matured:
    """Predictions made a label horizon before ``day`` with their outcome (column ``churned``), minus the rows
    a decision treated (unless the dataset keeps them) and the rows the scoring version trained on."""
    from platform_assets.ml.training import TimeSplit

    outcome = spec.outcome
    scored_on = day - timedelta(days=outcome.horizon_days)
    treatment = _treatment(outcome)
    table = dataset.lake_table(PREDICTIONS)
    predictions = lake.read_days(table, scored_on) if lake.exists(table) else pl.DataFrame()
    if predictions.is_empty():
        return Matured(scored_on, predictions, f"no predictions from {scored_on}", treatment)
    keep = [c for c in (outcome.split, outcome.treated) if c]
    outcomes = warehouse.query(
        f"select {', '.join([outcome.entity, outcome.label, *keep])} from {outcome.relation} "
        f"where {outcome.snapshot} = ?",
        [scored_on],
    ).rename({outcome.entity: spec.entity, outcome.label: OUTCOME})
    joined = predictions.join(outcomes, on=spec.entity, how="inner")
    if joined.is_empty():
        return Matured(
            scored_on,
            joined,
            (
                f"no matured outcome for the {predictions.height} predictions of {scored_on} in {outcome.name} "
                f"(its label matures {outcome.horizon_days} days later)"
            ),
            treatment,
        )
    notes, treated = [], 0
    if outcome.excludes_treated:
        untreated = joined.filter(~pl.col(outcome.treated).fill_null(False))
        treated = joined.height - untreated.height
        if treated:
            notes.append(
                f"{treated} of {joined.height} matured rows left out: treated ({outcome.name}.{outcome.treated})"
            )
        if untreated.is_empty():
            return Matured(scored_on, untreated, "; ".join(notes), treatment, treated)
        joined = untreated
    version = registry.by_number(joined["model_version"][0])
    recorded = registry.split(version.run_id)
    if recorded is None:
        note = f"v{version.version} recorded no split: its training rows are unknown"
        return Matured(scored_on, joined.clear(), note, treatment, treated)
    split = TimeSplit.from_json(recorded)
    unseen = joined.filter(~split.trained_on(spec.snapshot, joined.columns))
    left_out = joined.height - unseen.height
    if left_out:
        notes.append(f"{left_out} of {joined.height} matured rows left out: v{version.version} trained on them")
    rows = unseen.with_columns(pl.col(OUTCOME).cast(pl.Boolean))
    return Matured(scored_on, rows, "; ".join(notes), treatment, treated)


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


def report_performance(
    context: dg.AssetExecutionContext,
    config: PerformanceConfig,
    dataset: Dataset,
    warehouse: Warehouse,
    registry: ModelRegistry,
    lake: Lake,
):
    """Judge the predictions whose outcome matured today against the model card's validation figure."""
    from platform_assets.ml.evaluation import judge_fairness, largest_gap, metrics, segment_performance
    from platform_assets.plots import as_metadata, metric_over_time, png_bytes

    day = date.fromisoformat(context.partition_key)
    spec = spec_of(dataset)
    table = dataset.lake_table(MODEL_PERFORMANCE)
    found = matured(lake, warehouse, registry, dataset, spec, day)
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
                "evaluated_predictions_of": scored_on.isoformat(),
                "dagster/row_count": 0,
                "status": message,
                **found.treated_metadata(),
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
        f"(validation {validation.get('roc_auc', float('nan')):.3f}, floor {floor:.3f})" + (f"; {note}" if note else "")
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
            "left_out": note or "none",
            **found.treated_metadata(),
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
            f"{floor:.3f} (validation {validation.get('roc_auc', float('nan')):.3f} - tolerance {config.auc_tolerance})"
            if judged
            else f"not evaluated: v{version.version} recorded no validation ROC AUC to compare with"
        ),
        metadata={
            "partition": day.isoformat(),
            "model_version": version.version,
            "roc_auc": float(scores["roc_auc"]),
            "floor": floor,
            "calibration_error": float(scores["calibration_error"]),
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


class BusinessConfig(dg.Config):
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


def report_business_impact(
    context: dg.AssetExecutionContext,
    config: BusinessConfig,
    dataset: Dataset,
    warehouse: Warehouse,
    registry: ModelRegistry,
    lake: Lake,
):
    """The expected value of today's campaign, and the value the matured predictions achieved."""
    from platform_assets.ml.evaluation import lift_at
    from platform_assets.plots import as_metadata, metric_over_time, png_bytes

    day = date.fromisoformat(context.partition_key)
    spec = spec_of(dataset)
    table = dataset.lake_table(BUSINESS_IMPACT)
    today = lake.read_days(dataset.lake_table(PREDICTIONS), day)
    if today.is_empty():
        raise dg.Failure(f"No predictions for {day}: materialize churn_predictions for it first")
    expected = campaign_value(today["churn_probability"].to_numpy(), config)
    found = matured(lake, warehouse, registry, dataset, spec, day)
    scored_on, outcomes, note = found.scored_on, found.rows, found.note
    realized = {"scored_on": scored_on, "lift_top_decile": None, "realized_saving": None, "random_saving": None}
    if not outcomes.is_empty():
        y = outcomes[OUTCOME].cast(pl.Int64).to_numpy()
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
    delta_version = lake.replace_days(table, row, day, day)
    history = lake.scan(table).filter(pl.col("ds") > day - timedelta(days=60)).collect()
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
            "matured_note": note or "none",
            **found.treated_metadata(),
            "dagster/uri": lake.uri(table),
            "delta_version": delta_version,
        }
    )


@cache
def performance_assets(dataset: Dataset) -> tuple[dg.AssetsDefinition, dg.AssetsDefinition]:
    """``model_performance`` and ``business_impact`` of a declared dataset, downstream of its outcome model."""
    predictions = predictions_asset(dataset)
    outcome = dbt_key(dataset.outcome_model)
    performance_key = dataset.key("model_performance")
    matures = performance_partitions(dataset)
    horizon = spec_of(dataset).outcome.horizon_days
    # Day D judges the predictions of D - horizon (none for the first horizon of days).
    scored = dg.TimeWindowPartitionMapping(
        start_offset=-horizon, end_offset=-horizon, allow_nonexistent_upstream_partitions=True
    )

    @dg.asset(
        key=performance_key,
        partitions_def=matures,
        deps=[dg.AssetDep(predictions, partition_mapping=scored), outcome],
        group_name="monitoring",
        kinds={"delta", "polars"},
        owners=[OWNER],
        tags={"layer": "monitoring"},
        description=(
            f"How the `{dataset.registered_model}` predictions of one label horizon ago did, now that their outcome "
            f"has matured in the dbt model `{dataset.outcome_model}`: ROC AUC, PR AUC, calibration error and the "
            "largest ROC AUC gap across declared segments, against the model card's validation figures, on rows "
            "the model did not train on and no decision treated (the outcome model's `treated` column, e.g. "
            "customers a retention contact acted on within the horizon; dbt var `treated_labels`), counted in "
            "`treated_left_out`. One row per day in Delta; the chart shows the trend."
        ),
        metadata={
            "lake_table": dataset.lake_table(MODEL_PERFORMANCE),
            "dagster/column_schema": table_schema(PERFORMANCE_COLUMNS),
        },
        check_specs=[
            dg.AssetCheckSpec(
                PERFORMANCE_CHECK,
                asset=performance_key,
                description="ERROR when matured ROC AUC falls below the validation ROC AUC minus auc_tolerance; "
                "WARN, saying why, when too few rows have matured to tell.",
                partitions_def=matures,
            ),
            dg.AssetCheckSpec(
                FAIRNESS_CHECK,
                asset=performance_key,
                description="WARN when ROC AUC differs across the values of a declared segment by more than "
                "max_segment_gap, or when no segment could be evaluated.",
                partitions_def=matures,
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
        yield from report_performance(
            context, config, dataset, warehouse, registry.named(dataset.registered_model), lake
        )

    @dg.asset(
        key=dataset.key("business_impact"),
        partitions_def=daily_partitions,
        deps=[predictions, outcome],
        group_name="monitoring",
        kinds={"delta", "polars"},
        owners=[OWNER],
        tags={"layer": "monitoring"},
        description=(
            f"What the `{dataset.registered_model}` predictions are worth: the expected saving of contacting "
            "today's top-k, and for the predictions of one label horizon ago the lift in the top decile and the "
            "saving actually achieved against random targeting, with a configurable cost matrix."
        ),
        metadata={
            "lake_table": dataset.lake_table(BUSINESS_IMPACT),
            "dagster/column_schema": table_schema(IMPACT_COLUMNS),
        },
    )
    def business_impact(
        context: dg.AssetExecutionContext,
        config: BusinessConfig,
        warehouse: Warehouse,
        registry: ModelRegistry,
        lake: Lake,
    ):
        return report_business_impact(
            context, config, dataset, warehouse, registry.named(dataset.registered_model), lake
        )

    return model_performance, business_impact


model_performance, business_impact = performance_assets(DEFAULT)
