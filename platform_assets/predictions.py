"""Daily churn predictions: scored by the champion, explained, and traceable to their inputs."""

import json
import time
from datetime import UTC, date, datetime
from functools import cache

import dagster as dg
import numpy as np
import polars as pl
from pydantic import Field

from platform_assets.datasets import DEFAULT, dbt_key, spec_of
from platform_assets.metadata import OWNER, markdown_table, table_schema
from platform_assets.ml.feature_spec import Dataset
from platform_assets.model_assets import model_assets
from platform_assets.partitions import daily_partitions
from resources.lake import Lake
from resources.model_registry import CHAMPION, ModelRegistry
from resources.warehouse import Warehouse

PREDICTIONS = "predictions/churn_predictions"
COLUMNS = {
    "churn_probability": ("Float64", "Probability of the label (e.g. cancelling) within its horizon."),
    "risk_band": ("String", "low, medium or high, from the probability."),
    "top_reasons": ("List(Struct)", "The three features that moved the score most: name and signed SHAP contribution."),
    "expected_value": ("Float64", "The model's average log-odds; plus every contribution gives the customer's score."),
    "needs_review": ("Boolean", "True in the uncertain band: a person should look before acting."),
    "model_name": ("String", "Registered model that scored."),
    "model_version": ("String", "Its version (the champion at scoring time)."),
    "model_run_id": ("String", "MLflow run that trained it."),
    "feature_versions": ("String", "JSON: the warehouse relation and the lake versions the features were built from."),
    "scored_at": ("Datetime", "When the row was scored (UTC)."),
    "ds": ("Date", "Partition day."),
}


class ScoringConfig(dg.Config):
    medium_risk_from: float = Field(default=0.1, description="Probability from which a customer is medium risk.")
    high_risk_from: float = Field(default=0.3, description="Probability from which a customer is high risk.")
    review_from: float = Field(default=0.25, description="Lower end of the uncertain band sent to human review.")
    review_to: float = Field(default=0.35, description="Upper end of the uncertain band sent to human review.")
    reasons: int = Field(default=3, description="How many top reasons to keep per prediction.")


def top_reasons(contributions: np.ndarray, features: list[str], k: int) -> pl.Series:
    """The k features that moved each score most (by absolute SHAP value), with their signed push.

    Positive contributions raise the churn probability, negative ones lower it.
    """
    per_feature = contributions[:, :-1]
    k = min(k, per_feature.shape[1])
    order = np.argsort(-np.abs(per_feature), axis=1, kind="stable")[:, :k]
    names = np.asarray(features)[order]
    values = np.take_along_axis(per_feature, order, axis=1)
    reasons = pl.DataFrame({f"f{i}": names[:, i] for i in range(k)} | {f"c{i}": values[:, i] for i in range(k)})
    return reasons.select(
        pl.concat_list(
            [pl.struct(pl.col(f"f{i}").alias("feature"), pl.col(f"c{i}").alias("contribution")) for i in range(k)]
        ).alias("top_reasons")
    ).to_series()


def feature_versions(instance: dg.DagsterInstance, relation: str, key: dg.AssetKey) -> str:
    """The warehouse relation and the lake versions its latest build read, as JSON."""
    event = instance.get_latest_materialization_event(key)
    lake_versions = event.asset_materialization.metadata.get("lake_versions") if event else None
    return json.dumps({"relation": relation, "lake_versions": lake_versions.value if lake_versions else {}})


def score_day(
    context: dg.AssetExecutionContext,
    config: ScoringConfig,
    dataset: Dataset,
    warehouse: Warehouse,
    registry: ModelRegistry,
    lake: Lake,
) -> dg.MaterializeResult:
    """Score the day's rows of the declared scoring model with the champion, explained."""
    from platform_assets.plots import as_metadata, png_bytes, score_distribution

    day = date.fromisoformat(context.partition_key)
    spec = spec_of(dataset)
    table = dataset.lake_table(PREDICTIONS)
    champion = registry.version(CHAMPION)
    if champion is None:
        raise dg.Failure(f"{registry.model_name} has no {CHAMPION}: materialize churn_model and champion_model first")
    features = warehouse.query(f"select * from {spec.scoring_relation} where {spec.snapshot} = ?", [day])
    if features.is_empty():
        raise dg.Failure(
            f"{spec.scoring_relation} has no rows for {day}: materialize the raw data and dbt models for it"
        )

    model = registry.load(champion.version)
    started = time.perf_counter()
    probability = model.predict_frame(features)
    contributions = model.contributions(features)
    seconds = time.perf_counter() - started
    context.log.info(
        f"Scored {features.height} rows for {day} with {registry.model_name} v{champion.version} "
        f"in {seconds:.2f} s ({features.height / seconds:,.0f} rows/s)"
    )

    predictions = features.select(spec.entity, spec.snapshot).with_columns(
        pl.Series("churn_probability", probability),
        pl.Series(
            "risk_band",
            np.where(
                probability >= config.high_risk_from,
                "high",
                np.where(probability >= config.medium_risk_from, "medium", "low"),
            ),
        ),
        top_reasons(contributions, model.features, config.reasons),
        pl.Series("expected_value", contributions[:, -1]),
        pl.Series("needs_review", (probability >= config.review_from) & (probability < config.review_to)),
        pl.lit(registry.model_name).alias("model_name"),
        pl.lit(champion.version).alias("model_version"),
        pl.lit(champion.run_id).alias("model_run_id"),
        pl.lit(feature_versions(context.instance, spec.scoring_relation, dbt_key(dataset.scoring_model))).alias(
            "feature_versions"
        ),
        pl.lit(datetime.now(UTC)).cast(pl.Datetime("us", "UTC")).alias("scored_at"),
        pl.lit(day).alias("ds"),
    )
    version = lake.replace_days(table, predictions, day, day)

    bands = predictions.group_by("risk_band").agg(pl.len().alias("customers")).sort("risk_band")
    top = (
        predictions.sort("churn_probability", descending=True)
        .head(10)
        .select(
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
    )
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": predictions.height,
            "flagged_for_review": int(predictions["needs_review"].sum()),
            "high_risk": int((predictions["risk_band"] == "high").sum()),
            "mean_probability": float(probability.mean()),
            "model_version": champion.version,
            "model_version_url": dg.MetadataValue.url(registry.version_url(champion.version)),
            "delta_version": version,
            "dagster/uri": lake.uri(table),
            "rows_per_second": round(features.height / seconds),
            "risk_bands": dg.MetadataValue.md(markdown_table(bands)),
            "highest_risk": dg.MetadataValue.md(markdown_table(top)),
            "score_distribution": as_metadata(
                png_bytes(
                    score_distribution(
                        probability, [config.medium_risk_from, config.high_risk_from], f"Churn probability on {day}"
                    )
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
        partitions_def=daily_partitions,
        deps=[dbt_key(dataset.scoring_model), champion],
        group_name="predictions",
        kinds={"delta", "polars", "lightgbm"},
        owners=[OWNER],
        tags={"layer": "predictions"},
        description=(
            f"Daily predictions of `{dataset.registered_model}` for every row of the dbt model "
            f"`{dataset.scoring_model}` on the day, scored by the MLflow `champion` on the same features as "
            "training: probability, risk band, top three reasons (SHAP contributions), a review flag for uncertain "
            "scores, the model version and run, and the feature versions. One Delta partition per day."
        ),
        metadata={
            "lake_table": dataset.lake_table(PREDICTIONS),
            "dagster/column_schema": table_schema(key_columns | COLUMNS),
        },
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


churn_predictions = predictions_asset(DEFAULT)
