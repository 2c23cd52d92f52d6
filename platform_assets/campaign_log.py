"""The campaign log: its table, columns, arm labels and the reader of its matured outcomes.

``retention_campaign`` writes it; the impact measurement, the uplift model, the
decision reports and the features (which flag treated labels) read it. Its facts live
here, apart from all of them, so that none imports another only to learn a name and the
decisions package imports no module that imports it back.
"""

from __future__ import annotations

from datetime import date, timedelta

import polars as pl

HOLDOUT = "holdout"
CONTACT = "contact"

CAMPAIGN_LOG = "decisions/campaign_log"
LOG_COLUMNS = {
    "customer_id": (pl.Int64, "Customer targeted."),
    "campaign": (pl.String, "Campaign id: the name and its period's first day; arms are hashed on it."),
    "arm": (pl.String, "`contact` (contacted) or `holdout` (never contacted, the comparison)."),
    "contacted": (pl.Boolean, "True when the customer was exported for contact."),
    "rank": (pl.Int64, "Position in the day's ranking by expected net value (1 is first)."),
    "policy": (pl.String, "`risk` or `uplift`: what the ranking was by."),
    "churn_probability": (pl.Float64, "The score the decision used."),
    "risk_band": (pl.String, "Its risk band."),
    "needs_review": (pl.Boolean, "In the review band (contacted only after a reviewer approved)."),
    "top_reasons": (pl.String, "The prediction's top reasons, as `feature (contribution)`."),
    "model_name": (pl.String, "Registered model that scored."),
    "model_version": (pl.String, "Its version."),
    "predicted_uplift": (pl.Float64, "Predicted churn reduction of contact (uplift policy), else null."),
    "uplift_model_version": (pl.String, "Uplift model version (uplift policy), else null."),
    "customer_value": (pl.Float64, "Value of keeping the customer (monthly charge x value months)."),
    "expected_net_value": (pl.Float64, "Expected net value of contact (EUR)."),
    "offer_cost": (pl.Float64, "Cost of the offer if contacted (EUR)."),
    "holdout_share": (pl.Float64, "Holdout share of the campaign (power analysis)."),
    "assignment_draw": (pl.Float64, "The hash draw in [0, 1); below holdout_share is holdout."),
    "planned_contacts": (pl.Int64, "Contacts the campaign id's power analysis was sized for."),
    "ds": (pl.Date, "Campaign day (partition); the contact acts from the next day."),
}
LOG_SCHEMA = {name: dtype for name, (dtype, _) in LOG_COLUMNS.items()}


def matured_log(lake, warehouse, outcome, day: date) -> tuple[pl.DataFrame, str]:
    """Logged customers of every campaign day whose label horizon has passed by ``day``, with their outcome."""
    last = day - timedelta(days=outcome.horizon_days)
    if not lake.exists(CAMPAIGN_LOG):
        return pl.DataFrame(), "no campaign has run yet"
    log = lake.scan(CAMPAIGN_LOG).filter(pl.col("ds") <= last).collect()
    if log.is_empty():
        first = lake.scan(CAMPAIGN_LOG).select(pl.col("ds").min()).collect().item()
        if first is None:
            return log, "no campaign has run yet"
        return log, (
            f"no matured outcomes yet: the first campaign ({first}) matures on "
            f"{first + timedelta(days=outcome.horizon_days)} ({outcome.horizon_days}-day label horizon)"
        )
    outcomes = warehouse.query(
        f"select {outcome.entity} as customer_id, {outcome.snapshot} as ds, {outcome.label} as churned "
        f"from {outcome.relation} where {outcome.snapshot} between ? and ?",
        [log["ds"].min(), last],
    ).with_columns(pl.col("ds").cast(pl.Date), pl.col("churned").cast(pl.Boolean))
    joined = log.join(outcomes, on=["customer_id", "ds"], how="left")
    missing = joined["churned"].null_count()
    note = f"{missing} logged customers have no outcome in {outcome.relation}" if missing else ""
    return joined.filter(pl.col("churned").is_not_null()), note
