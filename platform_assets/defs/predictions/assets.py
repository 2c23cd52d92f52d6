"""Daily churn predictions: scored by the champion, explained, and traceable to their inputs."""

import json
import time
from datetime import UTC, date, datetime
from functools import cache

import dagster as dg
import polars as pl

from platform_assets.defs.datasets import dbt_key, lake_versions_read, spec_of
from platform_assets.defs.ml.assets import model_assets
from platform_assets.metadata import layer, markdown_table, stored_in
from platform_assets.ml.bands import bands_of
from platform_assets.ml.feature_spec import Dataset
from platform_assets.ml.scoring import DayScorer, ScoringConfig
from platform_assets.partitions import daily_partitions
from platform_assets.tables import PREDICTIONS
from resources.lake import Lake
from resources.model_registry import CHAMPION, ModelRegistry
from resources.warehouse import Warehouse


def feature_versions(instance: dg.DagsterInstance, relation: str, model: str) -> str:
    """The warehouse relation and the lake versions its latest build read, as JSON."""
    return json.dumps({"relation": relation, "lake_versions": lake_versions_read(instance, model)})


def score_day(
    context: dg.AssetExecutionContext,
    config: ScoringConfig,
    dataset: Dataset,
    warehouse: Warehouse,
    registry: ModelRegistry,
    lake: Lake,
) -> dg.MaterializeResult:
    """Score the day's rows of the declared scoring model with the champion, explained where it matters.

    The day is read once (its key columns and the model's features, as Arrow), and written
    to the lake as a stream of record batches in one commit, replacing the day.
    """
    from platform_assets.plots import as_metadata, png_bytes, score_distribution

    day = date.fromisoformat(context.partition_key)
    spec = spec_of(dataset)
    table = dataset.lake_table(PREDICTIONS)
    champion = registry.version(CHAMPION)
    if champion is None:
        raise dg.Failure(f"{registry.model_name} has no {CHAMPION}: materialize churn_model and champion_model first")
    model = registry.load(champion.version)
    bands = bands_of(registry.reference_profile(champion.run_id))
    columns = ", ".join(f'"{name}"' for name in [spec.entity, spec.snapshot, *model.features])
    features = warehouse.query(f"select {columns} from {spec.scoring_relation} where {spec.snapshot} = ?", [day])
    if features.is_empty():
        raise dg.Failure(
            f"{spec.scoring_relation} has no rows for {day}: materialize the raw data and dbt models for it "
            "(a range built with PLATFORM_FEATURE_DAYS=used holds only its training snapshot days and its last day)"
        )

    started = time.perf_counter()
    scorer = DayScorer(
        model,
        features,
        config,
        bands,
        keys=[spec.entity, spec.snapshot],
        constants=[
            pl.lit(registry.model_name).alias("model_name"),
            pl.lit(champion.version).alias("model_version"),
            pl.lit(champion.run_id).alias("model_run_id"),
            pl.lit(feature_versions(context.instance, spec.scoring_relation, dataset.scoring_model)).alias(
                "feature_versions"
            ),
            pl.lit(datetime.now(UTC)).cast(pl.Datetime("us", "UTC")).alias("scored_at"),
            pl.lit(day).alias("ds"),
        ],
    )
    version = lake.replace_days(table, scorer.batches, day, day, add_columns=True)
    seconds = time.perf_counter() - started
    predictions = scorer.scores
    probability = scorer.probability
    explained = predictions["explained_because"].drop_nulls()
    context.log.info(
        f"Scored and wrote {features.height} rows for {day} with {registry.model_name} v{champion.version} "
        f"in {seconds:.2f} s ({features.height / seconds:,.0f} rows/s), reasons for {explained.len()} of them"
    )

    shares = (
        predictions.group_by("risk_band")
        .agg(pl.len().alias("rows"))
        .with_columns((pl.col("rows") / predictions.height).round(4).alias("share"))
        .sort("risk_band")
    )
    why = explained.value_counts(sort=True, name="rows")
    top = scorer.highest.sort("churn_probability", descending=True).select(
        spec.entity,
        pl.col("churn_probability").round(3),
        "risk_band",
        pl.col("top_reasons")
        .list.eval(
            pl.format(
                "{} ({})", pl.element().struct.field("feature"), pl.element().struct.field("contribution").round(2)
            )
        )
        .list.join(", ")
        .alias("top_reasons"),
    )
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": predictions.height,
            "flagged_for_review": int(predictions["needs_review"].sum()),
            "high_risk": int((predictions["risk_band"] == "high").sum()),
            "mean_probability": float(probability.mean()),
            "rows_with_reasons": explained.len(),
            "share_with_reasons": round(explained.len() / predictions.height, 4),
            "reasons_for": dg.MetadataValue.md(
                f"`reasons_for: {config.reasons_for}`, top share {config.reasons_top_share}\n\n"
                + (markdown_table(why) if explained.len() else "no row selected")
            ),
            "model_version": champion.version,
            "model_version_url": dg.MetadataValue.url(registry.version_url(champion.version)),
            "delta_version": version,
            "dagster/uri": lake.uri(table),
            "rows_per_second": round(features.height / seconds),
            "scoring_seconds": round(seconds, 2),
            "risk_bands": dg.MetadataValue.md(markdown_table(shares)),
            "band_rule": bands.rule,
            "highest_risk": dg.MetadataValue.md(markdown_table(top)),
            "score_distribution": as_metadata(
                png_bytes(
                    score_distribution(probability, [bands.medium_from, bands.high_from], f"Churn probability on {day}")
                )
            ),
        }
    )


@cache
def predictions_asset(dataset: Dataset) -> dg.AssetsDefinition:
    """``churn_predictions`` of a declared dataset, downstream of its scoring model and its gate."""
    spec = spec_of(dataset)
    _, champion = model_assets(dataset)
    key_columns = {
        spec.entity: ("key", f"Key of the scoring model `{dataset.scoring_model}`."),
        spec.snapshot: ("Date", "Day scored; the features use data up to its end."),
    }

    @dg.asset(
        key=dataset.key("churn_predictions"),
        partitions_def=daily_partitions(),
        deps=[dbt_key(dataset.scoring_model), champion],
        **layer("predictions"),
        kinds={"delta", "polars", "lightgbm"},
        description=(
            f"Daily predictions of `{dataset.registered_model}` for every row of the dbt model "
            f"`{dataset.scoring_model}` on the day, scored by the MLflow `champion` on the same features as "
            "training: probability, risk band and review flag (by the bands recorded with the version), the top "
            "three reasons (exact SHAP contributions) for the rows someone acts on (high and medium risk, review, a configurable top share; "
            "every row with `reasons_for: all`) and why, the model version and run, and the feature versions. "
            "One Delta partition per day."
        ),
        metadata=stored_in(PREDICTIONS, dataset, key_columns),
    )
    def churn_predictions(
        context: dg.AssetExecutionContext,
        config: ScoringConfig,
        warehouse: Warehouse,
        registry: ModelRegistry,
        lake: Lake,
    ):
        return score_day(context, config, dataset, warehouse, registry.named(dataset.registered_model), lake)

    return churn_predictions
