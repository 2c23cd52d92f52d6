"""The daily retention campaign: whom to contact, whom to hold out, and the record of both.

From a day's predictions every eligible customer gets an expected net value of contact
(risk policy: probability of churn x expected offer effect x customer value - offer
cost; uplift policy: predicted churn reduction x customer value - offer cost). Walking
down that ranking, each customer's arm comes from the campaign's seeded hash: holdout
customers are kept back, contact customers are contacted, until the day's capacity
(budget over offer cost, or a contact limit) is used. Both arms of that ranked set are
logged, so the holdout is a random sample of exactly the customers who were targeted.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import TYPE_CHECKING, Literal

import dagster as dg
import numpy as np
import polars as pl
from pydantic import Field

from platform_assets.campaign_log import CONTACT
from platform_assets.decisions.assignment import assign, holdout_draw, plan_holdout
from platform_assets.decisions.review import ReviewStore
from platform_assets.decisions.uplift import predict_uplift
from platform_assets.economics import OfferEconomics
from platform_assets.metadata import markdown_table
from platform_assets.ml.scoring import top_reasons
from platform_assets.tables import scored_day
from resources.settings import settings

if TYPE_CHECKING:
    from platform_assets.decisions.scope import DecisionScope
    from platform_assets.ml.feature_spec import FeatureSpec
    from resources.exports import ContactExport
    from resources.lake import Lake
    from resources.model_registry import ModelRegistry
    from resources.warehouse import Warehouse

EXPORT_COLUMNS = [
    "customer_id",
    "contacted_on",
    "campaign",
    "offer_cost",
    "churn_probability",
    "top_reasons",
    "model_version",
]


class CampaignConfig(OfferEconomics):
    """Run config of ``retention_campaign``: budget, economics, policy and the holdout's power analysis."""

    name: str = Field(default="retention", description="Campaign name; with the period it is the campaign id.")
    period_days: int = Field(default=28, ge=1, description="Days of one campaign id (arms are fixed within it).")
    daily_budget: float = Field(default=3000.0, gt=0, description="Offer budget per campaign day (EUR).")
    max_contacts: int = Field(default=200, ge=1, description="Most customers contacted per campaign day.")
    value_months: float = Field(default=12.0, gt=0, description="Customer value = monthly charge x these months.")
    value_column: str | None = Field(
        default=None,
        description="Column of the scoring model with the monthly charge; default: the dataset's declared "
        "decisions.value_column.",
    )
    cooldown_days: int = Field(default=30, ge=0, description="Days after being targeted (either arm) before again.")
    targeting: Literal["risk", "uplift"] = Field(default="risk", description="Rank by risk or by predicted uplift.")
    uplift_alias: str = Field(
        default="champion", description="Uplift model alias to target by (`challenger` trials the newest)."
    )
    assignment_seed: int = Field(default=20261201, description="Seed of the arm hash (with the campaign id).")
    min_detectable_effect: float = Field(
        default=0.05, gt=0, description="Smallest absolute churn reduction worth detecting (power analysis)."
    )
    alpha: float = Field(default=0.05, gt=0, lt=1, description="Two-sided significance level.")
    power: float = Field(default=0.8, gt=0, lt=1, description="Power to detect min_detectable_effect.")
    planned_contacts: int | None = Field(
        default=None, description="Contacts of a campaign id the test pools; default capacity x period_days."
    )
    min_holdout_share: float = Field(default=0.05, gt=0, lt=1, description="Smallest holdout share.")
    max_holdout_share: float = Field(default=0.5, gt=0, lt=1, description="Largest holdout share.")

    def capacity(self) -> int:
        by_budget = int(self.daily_budget // self.offer_cost) if self.offer_cost > 0 else self.max_contacts
        return min(self.max_contacts, by_budget)

    def campaign_id(self, day: date, start: date) -> str:
        period_start = start + timedelta(days=(day - start).days // self.period_days * self.period_days)
        return f"{self.name}-{period_start.isoformat()}"


def reasons_text(top_reasons: pl.Expr) -> pl.Expr:
    """``feature (contribution), ...`` from the predictions' list of structs."""
    return top_reasons.list.eval(
        pl.format("{} ({})", pl.element().struct.field("feature"), pl.element().struct.field("contribution").round(3))
    ).list.join(", ")


def rank_candidates(
    candidates: pl.DataFrame, config: CampaignConfig, value_column: str, positive_only: bool = True
) -> pl.DataFrame:
    """Expected net value of contact per candidate, best first (positive ones only, unless asked for all)."""
    if config.targeting == "uplift":
        gain = pl.col("predicted_uplift")
    else:
        gain = pl.col("churn_probability") * config.offer_effect
    return (
        candidates.with_columns(
            customer_value=pl.col(value_column).cast(pl.Float64) * config.value_months,
        )
        .with_columns(expected_net_value=gain * pl.col("customer_value") - config.offer_cost)
        .filter((pl.col("expected_net_value") > 0) | (not positive_only))
        .sort(["expected_net_value", "customer_id"], descending=[True, False])
        .with_row_index("rank", offset=1)
        .with_columns(pl.col("rank").cast(pl.Int64))
    )


def choose(ranked: pl.DataFrame, campaign: str, seed: int, holdout_share: float, capacity: int) -> pl.DataFrame:
    """Arms by the campaign's hash down the ranking, cut where ``capacity`` contacts are reached."""
    draw = holdout_draw(campaign, seed, ranked["customer_id"].to_numpy())
    arm = assign(campaign, seed, ranked["customer_id"].to_numpy(), holdout_share)
    contacts = np.cumsum(arm == CONTACT)
    cut = int(np.searchsorted(contacts, capacity) + 1) if contacts.size and contacts[-1] >= capacity else len(arm)
    return ranked.with_columns(
        arm=pl.Series(arm, dtype=pl.String), assignment_draw=pl.Series(draw), holdout_share=pl.lit(holdout_share)
    ).head(cut)


def explain_missing(chosen: pl.DataFrame, features: pl.DataFrame, registry, model_name: str) -> pl.DataFrame:
    """Reasons for targeted customers whose prediction has none (scoring explains only the rows it flags, to save
    cost), computed by the model version that scored them, so every logged decision says why."""
    missing = chosen.filter(pl.col("top_reasons").is_null())
    if missing.is_empty():
        return chosen
    parts = [chosen.filter(pl.col("top_reasons").is_not_null())]
    for (version,), group in missing.group_by("model_version"):
        model = registry.named(model_name).load(str(version))
        rows = group.select("customer_id").join(features, on="customer_id", how="left")
        reasons = top_reasons(model.contributions(rows), model.features, 3)
        parts.append(group.with_columns(reasons.cast(chosen.schema["top_reasons"]).alias("top_reasons")))
    order = chosen.select("customer_id").with_row_index("_order")
    return pl.concat(parts).join(order, on="customer_id").sort("_order").drop("_order")


def recently_targeted(lake, campaign_log: str, day: date, cooldown_days: int) -> pl.DataFrame:
    """Customers targeted (either arm) in the cooldown before ``day``; the day itself is being replaced."""
    if cooldown_days == 0 or not lake.exists(campaign_log):
        return pl.DataFrame(schema={"customer_id": pl.Int64})
    return (
        lake.scan(campaign_log)
        .filter(pl.col("ds").is_between(day - timedelta(days=cooldown_days), day - timedelta(days=1)))
        .select("customer_id")
        .unique()
        .collect()
    )


def campaign_share(lake, campaign_log: str, campaign: str, day: date) -> float | None:
    """The holdout share an earlier day of the same campaign id used (arms stay fixed within it)."""
    if not lake.exists(campaign_log):
        return None
    earlier = (
        lake.scan(campaign_log)
        .filter((pl.col("campaign") == campaign) & (pl.col("ds") < day))
        .sort("ds")
        .select("holdout_share")
        .head(1)
        .collect()
    )
    return float(earlier.item()) if earlier.height else None


def run_campaign(
    context: dg.AssetExecutionContext,
    config: CampaignConfig,
    spec: FeatureSpec,
    scope: DecisionScope,
    *,
    lake: Lake,
    warehouse: Warehouse,
    registry: ModelRegistry,
    contact_export: ContactExport,
) -> dg.MaterializeResult:
    """Choose, assign, log and export one day's campaign on the predictions of ``spec``'s scoring model."""
    day = date.fromisoformat(context.partition_key)
    entity, start = spec.entity, settings().start_date
    value_column = config.value_column or scope.value_column
    predictions = scored_day(lake, scope.predictions, day)
    if not predictions.schema[entity].is_integer():
        raise dg.Failure(
            f"{scope.dataset.registered_model}: campaigns draw holdout arms by a hash of integer customer ids, and "
            f"{spec.scoring_relation}.{entity} is {predictions.schema[entity]}: give the scoring model an integer key, "
            "or remove decisions from its declaration"
        )
    features = warehouse.query(f"select * from {spec.scoring_relation} where {spec.snapshot} = ?", [day]).rename(
        {entity: "customer_id"}
    )
    if value_column not in features.columns:
        raise dg.Failure(f"value column {value_column!r} is not a column of {spec.scoring_relation}")
    candidates = predictions.rename({entity: "customer_id"}).join(
        features.select("customer_id", value_column), on="customer_id", how="inner"
    )
    uplift_version = None
    if config.targeting == "uplift":
        scored = features.join(
            predictions.select(pl.col(entity).alias("customer_id"), "churn_probability"), on="customer_id"
        )
        uplift_version, uplift = predict_uplift(registry, scored, scope.uplift_model, config.uplift_alias)
        candidates = candidates.join(uplift, on="customer_id", how="left")
    else:
        candidates = candidates.with_columns(predicted_uplift=pl.lit(None, pl.Float64))

    recent = recently_targeted(lake, scope.campaign_log, day, config.cooldown_days)
    decisions = ReviewStore(lake, scope.review_decisions).decisions_before(day)
    approved = decisions.filter(pl.col("decision") == "approve")["customer_id"]
    rejected = decisions.filter(pl.col("decision") == "reject")["customer_id"]
    in_cooldown = candidates.join(recent, on="customer_id", how="semi").height
    waiting = candidates.filter(
        pl.col("needs_review") & ~pl.col("customer_id").is_in(pl.concat([approved, rejected]).implode())
    )
    eligible = candidates.join(recent, on="customer_id", how="anti").filter(
        ~pl.col("customer_id").is_in(rejected.implode())
        & (~pl.col("needs_review") | pl.col("customer_id").is_in(approved.implode()))
    )
    ranked = rank_candidates(eligible, config, value_column)

    campaign = config.campaign_id(day, start)
    capacity = config.capacity()
    planned = config.planned_contacts or capacity * config.period_days
    base_rate = float(ranked["churn_probability"].head(capacity).mean()) if ranked.height else float("nan")
    plan = (
        plan_holdout(
            base_rate,
            config.min_detectable_effect,
            planned,
            config.alpha,
            config.power,
            (config.min_holdout_share, config.max_holdout_share),
        )
        if ranked.height
        else None
    )
    reused = campaign_share(lake, scope.campaign_log, campaign, day)
    share = reused if reused is not None else (plan.holdout_share if plan else config.max_holdout_share)
    chosen = choose(ranked, campaign, config.assignment_seed, share, capacity)
    explained_here = int(chosen["top_reasons"].null_count())
    if explained_here:
        chosen = explain_missing(chosen, features, registry, str(predictions["model_name"][0]))
    log = chosen.with_columns(
        campaign=pl.lit(campaign),
        contacted=pl.col("arm") == CONTACT,
        policy=pl.lit(config.targeting),
        top_reasons=reasons_text(pl.col("top_reasons")),
        uplift_model_version=pl.lit(uplift_version, pl.String),
        offer_cost=pl.lit(config.offer_cost),
        planned_contacts=pl.lit(planned),
        ds=pl.lit(day),
    ).select([pl.col(name).cast(dtype) for name, dtype in scope.campaign_log.schema.items()])
    delta_version = lake.replace_days(scope.campaign_log, log, day, day, add_columns=True)
    contacts = log.filter(pl.col("contacted")).select(
        "customer_id",
        pl.col("ds").alias("contacted_on"),
        "campaign",
        "offer_cost",
        "churn_probability",
        "top_reasons",
        "model_version",
    )
    paths = contact_export.write(day, contacts, scope.folder)
    held = log.height - contacts.height
    context.log.info(
        f"{campaign} on {day}: {contacts.height} contacted, {held} held out (share {share:.3f}) of "
        f"{ranked.height} with positive expected value; {in_cooldown} in cooldown, {waiting.height} awaiting review"
    )
    arms = log.group_by("arm").agg(
        pl.len().alias("customers"),
        pl.col("churn_probability").mean().alias("mean_probability"),
        pl.col("expected_net_value").sum().alias("expected_net_value"),
    )
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": log.height,
            "campaign": campaign,
            "policy": config.targeting,
            "contacted": contacts.height,
            "held_out": held,
            "capacity": capacity,
            "offer_spend_eur": round(contacts.height * config.offer_cost, 2),
            "expected_net_value_eur": float(log.filter(pl.col("contacted"))["expected_net_value"].sum()),
            "candidates_with_positive_value": ranked.height,
            "in_cooldown": in_cooldown,
            "reasons_computed_here": explained_here,
            "awaiting_review": waiting.height,
            "rejected_by_review": int(candidates["customer_id"].is_in(rejected.implode()).sum()),
            "holdout_share": share,
            "holdout_share_source": "earlier day of this campaign" if reused is not None else "power analysis",
            "power_analysis": dg.MetadataValue.json(plan.as_dict() if plan else {"note": "no candidates"}),
            "arms": dg.MetadataValue.md(markdown_table(arms.sort("arm"))),
            "model_version": str(predictions["model_version"][0]),
            "uplift_model_version": uplift_version or "not used",
            "contact_list_csv": dg.MetadataValue.path(str(paths["csv"])),
            "contact_list_parquet": dg.MetadataValue.path(str(paths["parquet"])),
            "dagster/uri": lake.uri(scope.campaign_log),
            "delta_version": delta_version,
        }
    )


__all__ = ["CampaignConfig", "run_campaign"]
