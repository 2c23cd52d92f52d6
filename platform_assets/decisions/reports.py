"""Reports for people: the weekly review transparency report and the business dashboard.

Both read what the platform stored (review decisions, the campaign log, matured
outcomes, monitoring tables) and say "not yet" where a figure has not matured.
"""

from __future__ import annotations

from datetime import date, timedelta

import polars as pl

from platform_assets.decisions.scope import DecisionScope


def _table(lake, name: str) -> pl.DataFrame:
    return lake.scan(name).collect() if lake.exists(name) else pl.DataFrame()


def review_outcomes(
    lake, warehouse, outcome, scope: DecisionScope, first: date, last: date
) -> tuple[dict, pl.DataFrame, str]:
    """The week's decisions: how many, approved, overridden (rejected: the reviewer stopped a contact the model
    recommended), and how the reviewed customers fared once their outcome matured, by decision and arm."""
    decisions = (
        lake.read_days(scope.review_decisions, first, last) if lake.exists(scope.review_decisions) else pl.DataFrame()
    )
    queued = lake.read_days(scope.review_queue, first, last).height if lake.exists(scope.review_queue) else 0
    if decisions.is_empty():
        return {"queued": queued, "reviewed": 0, "approved": 0, "overridden": 0}, pl.DataFrame(), "no decision"
    latest = decisions.sort("ds", "decided_at").unique("customer_id", keep="last")
    counts = {
        "queued": queued,
        "reviewed": latest.height,
        "approved": int((latest["decision"] == "approve").sum()),
        "overridden": int((latest["decision"] == "reject").sum()),
        "reviewers": latest["reviewer"].n_unique(),
    }
    log = _table(lake, scope.campaign_log)
    arms = (
        latest.join(log.select("customer_id", pl.col("ds").alias("campaign_day"), "arm"), on="customer_id", how="left")
        .filter(pl.col("campaign_day").is_null() | (pl.col("campaign_day") >= pl.col("ds")))
        .sort("campaign_day")
        .unique("customer_id", keep="first")
        if log.height
        else latest.with_columns(arm=pl.lit(None, pl.String))
    )
    outcomes = warehouse.query(
        f"select {outcome.entity} as customer_id, {outcome.snapshot} as ds, {outcome.label} as churned "
        f"from {outcome.relation} where {outcome.snapshot} between ? and ?",
        [first, last],
    ).with_columns(pl.col("ds").cast(pl.Date))
    fared = arms.join(outcomes, on=["customer_id", "ds"], how="inner")
    if fared.is_empty():
        return (
            counts,
            pl.DataFrame(),
            (f"outcomes not matured yet: decisions of {first}..{last} mature {outcome.horizon_days} days later"),
        )
    table = (
        fared.with_columns(pl.col("arm").fill_null("not targeted"))
        .group_by("decision", "arm")
        .agg(pl.len().alias("customers"), pl.col("churned").cast(pl.Float64).mean().alias("churn_rate"))
        .sort("decision", "arm")
    )
    note = f"{fared.height} of {latest.height} reviewed customers have a matured outcome"
    return counts, table, note


def dashboard_history(lake, scope: DecisionScope) -> dict[str, pl.DataFrame]:
    """Daily series of every business and model figure the platform stored for the scope's dataset."""
    series: dict[str, pl.DataFrame] = {}
    performance = _table(lake, scope.model_performance)
    if performance.height:
        series["churn_rate"] = performance.select("ds", pl.col("base_rate").alias("value"))
        series["roc_auc"] = performance.select("ds", pl.col("roc_auc").alias("value"))
    impact = (
        _table(lake, scope.campaign_impact).filter(pl.col("difference").is_not_null())
        if lake.exists(scope.campaign_impact)
        else pl.DataFrame()
    )
    if impact.height:
        series["net_saving_eur"] = impact.select("ds", pl.col("net_saving_eur").alias("value"))
        series["roi"] = impact.select("ds", pl.col("roi").alias("value"))
    drift = _table(lake, scope.feature_drift)
    if drift.height:
        series["drifted_feature_share"] = drift.group_by("ds").agg((pl.col("level") != "ok").mean().alias("value"))
    decisions = _table(lake, scope.review_decisions)
    if decisions.height:
        series["review_decisions"] = decisions.group_by("ds").agg(pl.len().cast(pl.Float64).alias("value"))
    log = _table(lake, scope.campaign_log)
    if log.height:
        series["campaign_reach"] = log.group_by("ds").agg(pl.col("contacted").sum().cast(pl.Float64).alias("value"))
    return {name: frame.sort("ds") for name, frame in series.items()}


def week_of(day: date) -> tuple[date, date]:
    return day, day + timedelta(days=6)
