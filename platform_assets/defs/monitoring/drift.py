"""Daily drift reports: each day's features and scores against the scoring model's reference.

The reference is the profile frozen with the model version that scored the day (of its
training rows, or of its validation rows when the dataset declares so), so a report
never rereads training data and always compares with what that model learned from. A
day that is part of the reference is not compared: its check warns and says so, and its
figures are kept for information with the level ``in reference``.
Each report appends its rows to a Delta table (one partition per day) for history,
and its check fails with ERROR when drift crosses the configured thresholds.
"""

from datetime import date, timedelta
from functools import cache

import dagster as dg
import polars as pl
from pydantic import Field

from platform_assets.defs.datasets import dbt_key
from platform_assets.defs.monitoring.reports import ReportDay, report_asset
from platform_assets.defs.predictions.assets import predictions_asset
from platform_assets.metadata import markdown_table
from platform_assets.ml.feature_spec import Dataset
from platform_assets.monitoring.checks import FEATURE_DRIFT_CHECK, PREDICTION_DRIFT_CHECK
from platform_assets.monitoring.drift import Thresholds, level_check
from platform_assets.partitions import daily_partitions
from platform_assets.tables import FEATURE_DRIFT, PREDICTION_DRIFT
from resources.lake import Lake


class DriftConfig(Thresholds):
    history_days: int = Field(default=30, description="Days of history shown in the charts.")


def _reference_text(reference: dict) -> str:
    """Which rows a profile describes, as recorded with it (older profiles: their snapshot days only)."""
    recorded = reference.get("reference")
    return recorded["description"] if recorded else f"snapshots {reference.get('snapshot', 'unknown')}"


def _history(lake: Lake, table: str, day: date, days: int) -> pl.DataFrame:
    return lake.scan(table).filter(pl.col("ds").is_between(day - timedelta(days=days - 1), day)).collect()


# The asset arguments both drift reports share: daily, in Delta, in the monitoring layer.


def report_feature_drift(context: dg.AssetExecutionContext, config: DriftConfig, on: ReportDay):
    """The day's features of the scoring model against the scoring version's reference profile."""
    from platform_assets.monitoring.drift import IN_REFERENCE, feature_drift, judge_features, reference_overlap
    from platform_assets.plots import as_metadata, drift_heatmap, png_bytes

    day, spec, registry, lake = on.day, on.spec, on.registry, on.lake
    table = on.table(FEATURE_DRIFT)
    version = registry.by_number(on.predictions()["model_version"][0])
    reference = registry.reference_profile(version.run_id)
    features = on.warehouse.query(f"select * from {spec.scoring_relation} where {spec.snapshot} = ?", [day])
    verdict = judge_features(feature_drift(reference, features, list(spec.features)), config)
    overlap = reference_overlap(reference, day)
    report = verdict.report.with_columns(
        *([pl.lit(IN_REFERENCE).alias("level")] if overlap else []),
        pl.lit(version.version).alias("model_version"),
        pl.lit(day).alias("ds"),
    ).sort("psi", descending=True)
    delta_version = lake.replace_days(table, report, day, day)
    drifted = verdict.drifted.sort("psi", descending=True)
    max_psi = f"max PSI {report['psi'].max():.3f} on {report['feature'][0]}"
    if overlap:
        severity, description = IN_REFERENCE, f"{overlap}; figures for information only ({max_psi})"
    else:
        severity, description = verdict.severity, "; ".join(verdict.reasons)
    context.log.info(
        f"{day}: {drifted.height} of {report.height} features drifted against v{version.version} "
        f"({max_psi}): {severity}"
    )
    history = _history(lake, table, day, config.history_days)
    shown = report.select(
        "feature",
        "level",
        "psi",
        "effect_size",
        "ks_statistic",
        "p_value",
        "reference_mean",
        "current_mean",
        "new_categories",
    )
    yield dg.MaterializeResult(
        metadata={
            "dagster/row_count": report.height,
            "drifted_features": drifted.height,
            "drifted_share": verdict.share,
            "max_psi": float(report["psi"].max()),
            "reference_model_version": version.version,
            "reference_snapshot": reference.get("snapshot", "unknown"),
            "reference": _reference_text(reference),
            "comparison": overlap or "against the reference",
            "drift": dg.MetadataValue.md(markdown_table(shown, 50)),
            "psi_history": as_metadata(
                png_bytes(drift_heatmap(history, "feature", "psi", config.psi_warn, config.psi_error))
            ),
            "dagster/uri": lake.uri(table),
            "delta_version": delta_version,
        }
    )
    yield level_check(
        FEATURE_DRIFT_CHECK,
        severity,
        description,
        {
            "partition": day.isoformat(),
            "model_version": version.version,
            "reference": _reference_text(reference),
            "drifted_features": dg.MetadataValue.json(drifted["feature"].to_list()),
            "drifted_share": verdict.share,
            "max_psi": float(report["psi"].max()),
            "thresholds": dg.MetadataValue.json(config.model_dump(exclude={"history_days"})),
            "figures": dg.MetadataValue.md(
                markdown_table(drifted.select("feature", "level", "psi", "effect_size"), 30)
            ),
        },
    )


def report_prediction_drift(context: dg.AssetExecutionContext, config: DriftConfig, on: ReportDay):
    """The day's scores against the scores frozen with the version that made them."""
    from platform_assets.monitoring.drift import IN_REFERENCE, numeric_drift, reference_overlap
    from platform_assets.plots import as_metadata, metric_over_time, png_bytes

    day, registry, lake = on.day, on.registry, on.lake
    predictions = on.predictions()
    table = on.table(PREDICTION_DRIFT)
    version = registry.by_number(predictions["model_version"][0])
    reference = registry.reference_profile(version.run_id)
    stats = numeric_drift(reference["score"], predictions["churn_probability"])
    overlap = reference_overlap(reference, day)
    row = pl.DataFrame(
        [{**stats, "rows": predictions.height, "model_version": version.version, "ds": day}]
    ).with_columns(level=pl.lit(IN_REFERENCE) if overlap else config.level(pl.col("psi"), pl.lit(0.0)))
    delta_version = lake.replace_days(table, row, day, day)
    level = row["level"][0]
    figures = (
        f"score PSI {stats['psi']:.3f} (warn {config.psi_warn}, error {config.psi_error}); "
        f"mean score {stats['current_mean']:.3f} vs {stats['reference_mean']:.3f}"
    )
    description = f"{overlap}; figures for information only ({figures})" if overlap else figures
    context.log.info(f"{day}: {description} against v{version.version} ({level})")
    history = _history(lake, table, day, config.history_days)
    yield dg.MaterializeResult(
        metadata={
            "psi": stats["psi"],
            "ks_statistic": stats["ks_statistic"],
            "p_value": stats["p_value"],
            "mean_score": stats["current_mean"],
            "reference_mean_score": stats["reference_mean"],
            "reference_model_version": version.version,
            "reference": _reference_text(reference),
            "comparison": overlap or "against the reference",
            "psi_history": as_metadata(
                png_bytes(metric_over_time(history, "psi", "Score PSI", [config.psi_warn, config.psi_error]))
            ),
            "dagster/uri": lake.uri(table),
            "delta_version": delta_version,
        }
    )
    yield level_check(
        PREDICTION_DRIFT_CHECK,
        level,
        description,
        {
            "partition": day.isoformat(),
            "model_version": version.version,
            "psi": stats["psi"],
            "thresholds": dg.MetadataValue.json({"psi_warn": config.psi_warn, "psi_error": config.psi_error}),
        },
    )


@cache
def drift_assets(dataset: Dataset) -> tuple[dg.AssetsDefinition, dg.AssetsDefinition]:
    """The feature and prediction drift reports of a declared dataset."""
    predictions = predictions_asset(dataset)
    shared = dict(partitions_def=daily_partitions(), kinds={"delta", "polars", "scipy"})
    feature_drift_report = report_asset(
        dataset,
        "feature_drift_report",
        FEATURE_DRIFT,
        DriftConfig,
        report_feature_drift,
        deps=[dbt_key(dataset.scoring_model), predictions],
        description=(
            f"Feature drift of the day's rows of `{dataset.scoring_model}` against the reference profile of the "
            f"`{dataset.registered_model}` version that scored them (its training rows, or its validation rows "
            "with `drift_reference: validation`): PSI per feature (reference deciles, empty bins "
            "floored at 1e-4), an effect size (Wasserstein over the reference std; Jensen-Shannon for categories), "
            "KS or chi-square p-values, and the share of drifted features. History in Delta; today as a table, the "
            "last 30 days as a chart."
        ),
        checks=[
            (
                FEATURE_DRIFT_CHECK,
                "ERROR when any feature's PSI or effect size passes its error bound or too many features drift; "
                "WARN on any drift, and on a day that is part of the reference (not a comparison).",
            )
        ],
        **shared,
    )
    prediction_drift_report = report_asset(
        dataset,
        "prediction_drift_report",
        PREDICTION_DRIFT,
        DriftConfig,
        report_prediction_drift,
        deps=[predictions],
        description=(
            f"Drift of the day's `{dataset.registered_model}` scores against the score profile frozen with the "
            "version that made them: PSI on the reference deciles, KS statistic and p-value, and the mean score. "
            "History in Delta."
        ),
        checks=[
            (
                PREDICTION_DRIFT_CHECK,
                "WARN when the score PSI passes psi_warn, ERROR above psi_error; WARN on a day that is part of the "
                "reference (not a comparison).",
            )
        ],
        **shared,
    )
    return feature_drift_report, prediction_drift_report
