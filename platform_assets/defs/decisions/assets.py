"""The ``decisions`` group: campaigns, their measured impact, review, uplift and the business dashboard.

Made for every dataset that declares ``decisions`` (its value column) in its dbt YAML: they
act on that dataset's predictions and read its declared scoring and outcome models, so
their lineage is what they read. The platform's own keep unprefixed keys and tables.
"""

from datetime import date, timedelta
from functools import cache

import dagster as dg
import polars as pl

from platform_assets.decisions.campaign import CampaignConfig, reasons_text, run_campaign
from platform_assets.decisions.impact import EFFECT_CHECK, ImpactConfig, report_impact
from platform_assets.decisions.reports import dashboard_history, review_outcomes
from platform_assets.decisions.review import ReviewError, ReviewStore
from platform_assets.decisions.scope import DecisionScope
from platform_assets.decisions.uplift import UpliftConfig, train_uplift
from platform_assets.defs.datasets import dbt_key, spec_of
from platform_assets.defs.predictions.assets import predictions_asset
from platform_assets.metadata import layer, markdown_table, stored_in
from platform_assets.ml.feature_spec import Dataset
from platform_assets.partitions import daily_partitions, weekly_partitions
from platform_assets.plots import as_metadata, metric_over_time, png_bytes
from platform_assets.tables import CAMPAIGN_LOG, scored_day
from resources.exports import ContactExport, ReviewInbox
from resources.lake import Lake
from resources.model_registry import ModelRegistry
from resources.warehouse import Warehouse


@cache
def decision_assets(
    dataset: Dataset,
) -> tuple[list[dg.AssetsDefinition | dg.AssetSpec], "dg.UnresolvedAssetJobDefinition"]:
    """A deciding dataset's decision assets and its ``decide_day`` job, made on first use.

    The platform's own campaign log is also the dbt source ``lake.campaign_log`` its
    outcome model reads to flag treated labels; another dataset's log is kept under its
    model name, and its labels are cleaned of treatment only if its own dbt reads it.
    """
    scope = DecisionScope.of(dataset)
    spec = spec_of(dataset)
    churn_predictions = predictions_asset(dataset)
    key = dataset.key
    own = not dataset.prefix  # the platform's own: its log is the dbt source its outcome model reads
    treated = (
        ""
        if own
        else f" Its log `{scope.campaign_log}` is not read by `{dataset.outcome_model}` unless that model's dbt reads "
        "it, so contacted customers' labels are not left out of training and monitoring."
    )

    @dg.asset(
        key=key("review_decisions"),
        partitions_def=daily_partitions(),
        **layer("decisions"),
        kinds={"delta", "polars"},
        description=(
            "Review decisions that reviewers dropped in the review inbox for the day "
            "(`<inbox>/<YYYY-MM-DD>[-name].csv`: customer_id, decision approve|reject, reviewer, note), stored with who, "
            "when and which file, beside the ones recorded with `churn-platform review decide`. A file with a row that "
            "is not a decision is refused whole, naming the line."
        ),
        metadata=stored_in(scope.review_decisions),
    )
    def review_decisions(
        context: dg.AssetExecutionContext, lake: Lake, review_inbox: ReviewInbox
    ) -> dg.MaterializeResult:
        day = date.fromisoformat(context.partition_key)
        store = ReviewStore(lake, scope.review_decisions)
        files = review_inbox.files(day, scope.folder)
        version = lake.version(scope.review_decisions)
        for path in files:
            try:
                frame = pl.read_csv(path, infer_schema=False)
            except pl.exceptions.PolarsError as error:
                raise dg.Failure(f"review file {path} cannot be read: {error}") from None
            try:
                version = store.record(frame, day, f"inbox:{path.name}")
            except ReviewError as error:
                raise dg.Failure(str(error)) from None
        stored = store.read(day, day)
        counts = stored.group_by("decision", "source").agg(pl.len().alias("decisions")).sort("decision", "source")
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": stored.height,
                "files": dg.MetadataValue.json([str(p) for p in files]),
                "decisions": dg.MetadataValue.md(markdown_table(counts) if stored.height else "none for this day"),
                "dagster/uri": lake.uri(scope.review_decisions),
                "delta_version": version if version is not None else "no decision stored yet",
            }
        )

    @dg.asset(
        key=key("review_queue"),
        partitions_def=daily_partitions(),
        deps=[churn_predictions, review_decisions],
        **layer("decisions"),
        kinds={"delta", "polars"},
        description=(
            "Customers of the day's predictions in the review band who have no recent decision: they wait here, and no "
            "campaign contacts them, until a reviewer approves (`churn-platform review list` shows them)."
        ),
        metadata=stored_in(scope.review_queue),
    )
    def review_queue(context: dg.AssetExecutionContext, lake: Lake) -> dg.MaterializeResult:
        day = date.fromisoformat(context.partition_key)
        predictions = scored_day(lake, scope.predictions, day)
        decided = ReviewStore(lake, scope.review_decisions).decisions_before(day).select("customer_id")
        queue = (
            predictions.rename({spec.entity: "customer_id"})
            .filter(pl.col("needs_review"))
            .join(decided, on="customer_id", how="anti")
            .with_columns(top_reasons=reasons_text(pl.col("top_reasons")), ds=pl.lit(day))
            .select([pl.col(n).cast(t) for n, t in scope.review_queue.schema.items()])
            .sort("churn_probability", descending=True)
        )
        version = lake.replace_days(scope.review_queue, queue, day, day)
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": queue.height,
                "in_review_band": int(predictions["needs_review"].sum()),
                "already_decided": int(predictions["needs_review"].sum()) - queue.height,
                "queue": dg.MetadataValue.md(markdown_table(queue.drop("ds"))),
                "dagster/uri": lake.uri(scope.review_queue),
                "delta_version": version,
            }
        )

    @dg.asset(
        key=key("retention_campaign"),
        partitions_def=daily_partitions(),
        deps=[churn_predictions, dbt_key(dataset.scoring_model), review_decisions],
        **layer("decisions"),
        kinds={"delta", "polars", "statsmodels"},
        description=(
            "The day's retention campaign: eligible customers (not targeted within the cooldown, review-band ones only "
            "once approved, rejected ones never) ranked by expected net value of contact (risk: p x offer effect x "
            "customer value - cost; or predicted uplift x value - cost), arms by a seeded hash of campaign and customer, "
            "a holdout sized by a power analysis, contacts up to the budget. Both arms are logged in Delta with the "
            "model version, score, reasons and arm; the contacts are exported as CSV and Parquet for the CRM." + treated
        ),
        metadata=stored_in(scope.campaign_log),
    )
    def retention_campaign(
        context: dg.AssetExecutionContext,
        config: CampaignConfig,
        lake: Lake,
        warehouse: Warehouse,
        contact_export: ContactExport,
        registry: ModelRegistry,
    ) -> dg.MaterializeResult:
        return run_campaign(
            context,
            config,
            spec,
            scope,
            lake=lake,
            warehouse=warehouse,
            registry=registry,
            contact_export=contact_export,
        )

    # The log as the dbt outcome model reads it (source lake.campaign_log). It is written by
    # retention_campaign, but drawn without that edge: the campaign acts on the predictions of a
    # model trained on labels that leave the earlier campaigns' contacts out, a loop an asset
    # graph cannot hold. A day's dbt build (daily_pipeline) runs before its campaign (decide_day),
    # so it reads the log of the days before, every contact that can act on a matured label.
    campaign_log_source = dg.AssetSpec(
        "campaign_log",
        **layer("decisions"),
        kinds={"delta"},
        description=(
            "The retention campaigns' log (`decisions/campaign_log`, written by `retention_campaign`: both arms, "
            "whether each customer was contacted) as the dbt source `lake.campaign_log`. `churn_outcomes` flags the "
            "customer-days a contact acted on within the label horizon (`treated_within_horizon`), which training and "
            "performance monitoring leave out by default (dbt var `treated_labels`). Empty until the first campaign."
        ),
        metadata=stored_in(CAMPAIGN_LOG),
    )

    @dg.asset(
        key=key("campaign_impact"),
        partitions_def=daily_partitions(),
        deps=[retention_campaign, dbt_key(dataset.outcome_model)],
        **layer("decisions"),
        kinds={"delta", "polars", "statsmodels"},
        description=(
            "What the campaigns measurably did, once their label horizon has passed: churn of contacted against holdout "
            "customers stratified by campaign (Cochran-Mantel-Haenszel test and odds ratio, the campaigns' differences "
            "combined with inverse-variance weights; statsmodels), beside the pooled two-arm comparison it replaces for "
            "decisions; customers retained, retained revenue, offer cost, net saving, ROI, annualized saving and NPV, "
            "each with the interval's bounds; per campaign, and for the uplift policy against the risk policy on the "
            "holdout. Without matured outcomes it says when they mature, never a zero."
        ),
        metadata={"lake_table": scope.campaign_impact},
        check_specs=[
            dg.AssetCheckSpec(
                EFFECT_CHECK,
                asset=key("campaign_impact"),
                description="Stratified by campaign and sequential over the daily looks (O'Brien-Fleming-type alpha "
                "spending by matured contacts over planned contacts, a union bound over looks): ERROR when the test "
                "declares that contact raises churn; WARN when no effect is declared by the campaign's planned size (or "
                "nothing can be judged yet), saying which; below the planned size an undeclared effect passes as "
                "inconclusive.",
                partitions_def=daily_partitions(),
            )
        ],
    )
    def campaign_impact(
        context: dg.AssetExecutionContext,
        config: ImpactConfig,
        lake: Lake,
        warehouse: Warehouse,
        registry: ModelRegistry,
    ):
        yield from report_impact(context, config, lake, warehouse, registry, spec, scope)

    @dg.asset(
        key=key("uplift_model"),
        deps=[retention_campaign, dbt_key(dataset.outcome_model), dbt_key(dataset.scoring_model)],
        **layer("decisions"),
        kinds={"lightgbm", "mlflow", "polars"},
        description=(
            "An uplift model (an S-learner on LightGBM that starts from the churn score: one booster with the score's "
            "log-odds as initial score, on the campaign day's features and a contact indicator) trained on every matured "
            "campaign outcome once each arm has enough, logged and registered in MLflow as `uplift_model` (alias "
            "`challenger`), promoted to `champion` only when its validation Qini beats the churn score's on the same "
            f"held-out customers. `retention_campaign` with `targeting: uplift` ranks by its champion. Registered as "
            f"`{scope.uplift_model}`."
        ),
    )
    def uplift_model(
        context: dg.AssetExecutionContext,
        config: UpliftConfig,
        lake: Lake,
        warehouse: Warehouse,
        registry: ModelRegistry,
    ) -> dg.MaterializeResult:
        return train_uplift(context, config, lake, warehouse, registry, spec, scope)

    @dg.asset(
        key=key("review_report"),
        partitions_def=weekly_partitions(),
        deps=[review_decisions, review_queue, retention_campaign, dbt_key(dataset.outcome_model)],
        **layer("decisions"),
        kinds={"delta", "polars"},
        description=(
            "The week's review transparency report: customers queued, reviewed, approved and overridden (rejected: the "
            "reviewer stopped a contact the model recommended), by how many reviewers, and how reviewed customers fared "
            "(churn rate by decision and campaign arm) once their outcome matured; until then it says when."
        ),
    )
    def review_report(context: dg.AssetExecutionContext, lake: Lake, warehouse: Warehouse) -> dg.MaterializeResult:
        first = date.fromisoformat(context.partition_key)
        last = first + timedelta(days=6)
        counts, fared, note = review_outcomes(lake, warehouse, spec.outcome, scope, first, last)
        row = pl.DataFrame(
            [{"ds": first, **{k: counts.get(k, 0) for k in ("queued", "reviewed", "approved", "overridden")}}]
        )
        version = lake.replace_days(scope.review_report, row, first, first)
        return dg.MaterializeResult(
            metadata={
                **{k: int(v) for k, v in counts.items()},
                "week": f"{first}..{last}",
                "how_reviewed_customers_fared": dg.MetadataValue.md(markdown_table(fared) if fared.height else note),
                "note": note,
                "dagster/uri": lake.uri(scope.review_report),
                "delta_version": version,
            }
        )

    @dg.asset(
        key=key("business_dashboard"),
        deps=[
            campaign_impact,
            review_decisions,
            retention_campaign,
            dg.AssetKey(key("model_performance")),
            dg.AssetKey(key("feature_drift_report")),
        ],
        **layer("decisions"),
        kinds={"delta", "polars"},
        description=(
            "The business dashboard: churn rate and ROC AUC of matured predictions, measured net saving and ROI of the "
            "campaigns, the share of drifted features, review volume and campaign reach, day by day, plotted together "
            "so a divergence (AUC holding while savings fall, drift rising before churn) is seen; a series with no "
            "stored figure yet is listed as missing, not drawn as zero."
        ),
    )
    def business_dashboard(context: dg.AssetExecutionContext, lake: Lake) -> dg.MaterializeResult:
        series = dashboard_history(lake, scope)
        wanted = [
            "churn_rate",
            "net_saving_eur",
            "roi",
            "roc_auc",
            "drifted_feature_share",
            "review_decisions",
            "campaign_reach",
        ]
        missing = [name for name in wanted if name not in series]
        long = (
            pl.concat(
                [
                    frame.with_columns(pl.lit(name).alias("series"), pl.col("value").cast(pl.Float64))
                    for name, frame in series.items()
                ]
            )
            if series
            else pl.DataFrame(schema={"ds": pl.Date, "value": pl.Float64, "series": pl.String})
        )
        version = lake.replace_days(scope.dashboard, long, long["ds"].min(), long["ds"].max()) if long.height else None
        latest = {name: float(frame["value"][-1]) for name, frame in series.items()}
        return dg.MaterializeResult(
            metadata={
                **{f"latest_{name}": value for name, value in latest.items()},
                "missing_series": dg.MetadataValue.json(missing),
                **{
                    f"{name}_over_time": as_metadata(
                        png_bytes(metric_over_time(frame, "value", name.replace("_", " ")))
                    )
                    for name, frame in series.items()
                },
                "dagster/uri": lake.uri(scope.dashboard),
                "delta_version": version if version is not None else "nothing stored yet",
            }
        )

    assets = [
        review_decisions,
        review_queue,
        retention_campaign,
        *([campaign_log_source] if own else []),
        campaign_impact,
        uplift_model,
        review_report,
        business_dashboard,
    ]

    decide_day = dg.define_asset_job(
        dataset.name("decide_day"),
        selection=dg.AssetSelection.assets(review_decisions, review_queue, retention_campaign, campaign_impact),
        partitions_def=daily_partitions(),
        description="A scored day's decisions: review decisions landed, the review queue, the retention campaign (log "
        "and export) and the measured impact of every campaign matured by then.",
    )
    return assets, decide_day
