"""The campaign log: its arm labels and the reader of its matured outcomes.

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


def matured_log(lake, warehouse, outcome, day: date, campaign_log: str) -> tuple[pl.DataFrame, str]:
    """Logged customers of every campaign day whose label horizon has passed by ``day``, with their outcome."""
    last = day - timedelta(days=outcome.horizon_days)
    if not lake.exists(campaign_log):
        return pl.DataFrame(), "no campaign has run yet"
    log = lake.scan(campaign_log).filter(pl.col("ds") <= last).collect()
    if log.is_empty():
        first = lake.scan(campaign_log).select(pl.col("ds").min()).collect().item()
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
