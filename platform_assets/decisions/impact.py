"""What the campaigns measurably did: contacted against holdout, once their outcomes matured.

The comparison is the campaign log's two arms, both drawn from the same ranked set by
the campaign's hash, joined with the outcome the dataset's outcome model holds for the
campaign day (churn within the label horizon after it). The interval of the difference
is Newcomb's hybrid score interval and the p-value the Agresti-Caffo test of
statsmodels; the money follows from the same interval, so a saving is never reported
tighter than the churn difference it rests on. Without matured outcomes there is no
figure, only the day they mature.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date, timedelta

import dagster as dg
import numpy as np
import polars as pl
from pydantic import Field

from platform_assets.decisions.campaign import CAMPAIGN_LOG, CONTACT, HOLDOUT

CAMPAIGN_IMPACT = "decisions/campaign_impact"
EFFECT_CHECK = "campaign_effect"


class ImpactConfig(dg.Config):
    """Run config of ``campaign_impact``: significance and how savings are annualized and discounted."""

    alpha: float = Field(default=0.05, gt=0, lt=1, description="Two-sided level: the interval is 1 - alpha.")
    discount_rate: float = Field(default=0.08, ge=0, description="Yearly discount rate of the NPV.")
    npv_years: int = Field(default=3, ge=1, description="Years of annualized saving the NPV discounts.")
    min_outcomes_per_arm: int = Field(default=30, ge=1, description="Fewest matured outcomes per arm to report.")


@dataclass(frozen=True)
class Effect:
    """Churn of contacted against holdout customers, with intervals (difference = contacted - holdout)."""

    contacted: int
    contacted_churned: int
    holdout: int
    holdout_churned: int
    contacted_rate: float
    holdout_rate: float
    difference: float
    difference_low: float
    difference_high: float
    relative_reduction: float
    relative_reduction_low: float
    relative_reduction_high: float
    p_value: float

    def as_dict(self) -> dict:
        return asdict(self)


def measure(contacted_churned: int, contacted: int, holdout_churned: int, holdout: int, alpha: float) -> Effect:
    """The two-proportion comparison of statsmodels (Newcomb interval, Agresti-Caffo test; log ratio interval)."""
    from statsmodels.stats.proportion import confint_proportions_2indep, test_proportions_2indep

    args = (contacted_churned, contacted, holdout_churned, holdout)
    low, high = confint_proportions_2indep(*args, compare="diff", method="newcomb", alpha=alpha)
    if holdout_churned and contacted_churned:
        ratio_low, ratio_high = confint_proportions_2indep(*args, compare="ratio", method="log-adjusted", alpha=alpha)
    else:
        ratio_low, ratio_high = float("nan"), float("nan")
    p_value = float(test_proportions_2indep(*args, compare="diff").pvalue)
    treated_rate, control_rate = contacted_churned / contacted, holdout_churned / holdout
    ratio = treated_rate / control_rate if control_rate else float("nan")
    return Effect(
        contacted,
        contacted_churned,
        holdout,
        holdout_churned,
        treated_rate,
        control_rate,
        treated_rate - control_rate,
        float(low),
        float(high),
        1.0 - ratio,
        1.0 - float(ratio_high),
        1.0 - float(ratio_low),
        p_value,
    )


def economics(effect: Effect, customer_value: float, offer_cost: float, days: int, config: ImpactConfig) -> dict:
    """Customers retained, revenue, cost, net saving and ROI (each with the interval's bounds), annualized and NPV."""
    out: dict[str, float] = {"offer_cost_eur": offer_cost, "campaign_days_covered": days}
    for suffix, difference in (
        ("", effect.difference),
        ("_low", effect.difference_high),
        ("_high", effect.difference_low),
    ):
        retained = -difference * effect.contacted
        revenue = retained * customer_value
        net = revenue - offer_cost
        annual = net * 365.0 / days
        out |= {
            f"customers_retained{suffix}": retained,
            f"retained_revenue_eur{suffix}": revenue,
            f"net_saving_eur{suffix}": net,
            f"roi{suffix}": net / offer_cost if offer_cost else float("nan"),
            f"annualized_saving_eur{suffix}": annual,
            f"npv_eur{suffix}": sum(annual / (1 + config.discount_rate) ** y for y in range(1, config.npv_years + 1)),
        }
    return out


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


def summarize(rows: pl.DataFrame, config: ImpactConfig) -> tuple[Effect | None, dict, str]:
    """The effect and money over matured log rows, or why there is none."""
    arms = {arm: rows.filter(pl.col("arm") == arm) for arm in (CONTACT, HOLDOUT)}
    sizes = {arm: frame.height for arm, frame in arms.items()}
    if min(sizes.values()) < config.min_outcomes_per_arm:
        return (
            None,
            {},
            (
                f"only {sizes[CONTACT]} contacted and {sizes[HOLDOUT]} holdout outcomes have matured "
                f"(at least {config.min_outcomes_per_arm} per arm needed)"
            ),
        )
    contacted, holdout = arms[CONTACT], arms[HOLDOUT]
    effect = measure(
        int(contacted["churned"].sum()), contacted.height, int(holdout["churned"].sum()), holdout.height, config.alpha
    )
    days = sorted(set(rows["ds"].to_list()))
    gaps = np.diff(np.array(days, dtype="datetime64[D]")).astype(int)
    cadence = int(np.median(gaps)) if len(gaps) else 1
    covered = (days[-1] - days[0]).days + cadence
    money = economics(
        effect, float(contacted["customer_value"].mean()), float(contacted["offer_cost"].sum()), covered, config
    )
    return effect, money, ""


def planned_size(rows: pl.DataFrame) -> int | None:
    """The largest planned contacts among the pooled campaigns: past it, every one of them had its power."""
    if "planned_contacts" not in rows.columns or rows["planned_contacts"].is_null().all():
        return None
    return int(rows["planned_contacts"].max())


def judge(
    effect: Effect | None, why_not: str, planned: int | None, alpha: float
) -> tuple[bool, dg.AssetCheckSeverity, str]:
    """The campaign_effect check: ERROR on significant harm; WARN on no significant effect at the planned size.

    Below the planned size a non-significant result is what the power analysis predicts, so the
    check passes and says it is inconclusive; significant harm fails it at any size.
    """
    if effect is None:
        return False, dg.AssetCheckSeverity.WARN, f"not evaluated: {why_not}"
    text = (
        f"churn {effect.contacted_rate:.3f} contacted vs {effect.holdout_rate:.3f} holdout: difference "
        f"{effect.difference:+.3f} (95% CI {effect.difference_low:+.3f}..{effect.difference_high:+.3f}, "
        f"p = {effect.p_value:.3g}) on {effect.contacted} + {effect.holdout} matured outcomes"
    )
    if effect.difference_low > 0 and effect.p_value < alpha:
        return False, dg.AssetCheckSeverity.ERROR, f"contact does harm: {text}"
    if effect.p_value >= alpha and planned and effect.contacted < planned:
        return (
            True,
            dg.AssetCheckSeverity.WARN,
            (
                f"inconclusive so far: {text}; {effect.contacted} of the {planned} contacts the power analysis "
                "planned have matured, so no verdict before then"
            ),
        )
    if effect.p_value >= alpha:
        size = f"at its planned size ({planned} contacts)" if planned else "(no planned size logged)"
        return False, dg.AssetCheckSeverity.WARN, f"no significant effect {size}: {text}"
    return True, dg.AssetCheckSeverity.WARN, f"significant reduction: {text}"


IMPACT_SCHEMA = {
    "ds": pl.Date,
    "matured_through": pl.Date,
    "campaign_days": pl.Int64,
    "contacted": pl.Int64,
    "holdout": pl.Int64,
    "contacted_rate": pl.Float64,
    "holdout_rate": pl.Float64,
    "difference": pl.Float64,
    "difference_low": pl.Float64,
    "difference_high": pl.Float64,
    "p_value": pl.Float64,
    "net_saving_eur": pl.Float64,
    "net_saving_eur_low": pl.Float64,
    "net_saving_eur_high": pl.Float64,
    "roi": pl.Float64,
    "status": pl.String,
}


def per_campaign(rows: pl.DataFrame, config: ImpactConfig) -> pl.DataFrame:
    """One row per campaign id: the same comparison within it (the arms are fixed within a campaign)."""
    out = []
    for (campaign,), group in rows.group_by("campaign", maintain_order=True):
        effect, money, why_not = summarize(group, config)
        out.append(
            {
                "campaign": campaign,
                "contacted": group.filter(pl.col("arm") == CONTACT).height,
                "holdout": group.filter(pl.col("arm") == HOLDOUT).height,
                "difference": effect.difference if effect else None,
                "ci_low": effect.difference_low if effect else None,
                "ci_high": effect.difference_high if effect else None,
                "p_value": effect.p_value if effect else None,
                "net_saving_eur": money.get("net_saving_eur"),
                "note": why_not,
            }
        )
    return pl.DataFrame(out).sort("campaign")


def report_impact(context: dg.AssetExecutionContext, config: ImpactConfig, lake, warehouse, registry, spec):
    """Measure every matured campaign day up to the partition, store the day's row, check the effect."""
    from platform_assets.decisions.uplift import policy_comparison
    from platform_assets.metadata import markdown_table
    from platform_assets.plots import as_metadata, effect_over_time, metric_over_time, png_bytes

    day = date.fromisoformat(context.partition_key)
    outcome = spec.outcome
    rows, note = matured_log(lake, warehouse, outcome, day)
    effect, money, why_not = summarize(rows, config) if rows.height else (None, {}, note)
    shares = sorted(set(rows["holdout_share"].round(4).to_list())) if rows.height else []
    planned = planned_size(rows)
    passed, severity, text = judge(effect, why_not, planned, config.alpha)
    row = {
        "ds": day,
        "matured_through": day - timedelta(days=outcome.horizon_days),
        "campaign_days": rows["ds"].n_unique() if rows.height else 0,
        "contacted": effect.contacted if effect else 0,
        "holdout": effect.holdout if effect else 0,
        **(
            {k: getattr(effect, k) for k in ("contacted_rate", "holdout_rate", "difference", "difference_low")}
            | {"difference_high": effect.difference_high, "p_value": effect.p_value}
            if effect
            else {}
        ),
        **{k: money[k] for k in ("net_saving_eur", "net_saving_eur_low", "net_saving_eur_high", "roi") if k in money},
        "status": text,
    }
    frame = pl.DataFrame([row], schema=IMPACT_SCHEMA)
    version = lake.replace_days(CAMPAIGN_IMPACT, frame, day, day)
    history = lake.scan(CAMPAIGN_IMPACT).filter(pl.col("difference").is_not_null()).collect()
    context.log.info(f"{day}: {text}")
    metadata: dict = {
        "status": text,
        "matured_through": row["matured_through"].isoformat(),
        "dagster/row_count": rows.height,
        "dagster/uri": lake.uri(CAMPAIGN_IMPACT),
        "delta_version": version,
    }
    if effect is not None:
        scores, policies = policy_comparison(
            rows, warehouse, registry, spec, money["offer_cost_eur"] / effect.contacted
        )
        metadata |= {
            "churn_contacted": effect.contacted_rate,
            "churn_holdout": effect.holdout_rate,
            "absolute_reduction": -effect.difference,
            "absolute_reduction_95ci": dg.MetadataValue.json([-effect.difference_high, -effect.difference_low]),
            "relative_reduction": effect.relative_reduction,
            "relative_reduction_95ci": dg.MetadataValue.json(
                [effect.relative_reduction_low, effect.relative_reduction_high]
            ),
            "p_value": effect.p_value,
            "contacted_outcomes": effect.contacted,
            "holdout_outcomes": effect.holdout,
            **{k: float(v) for k, v in money.items()},
            "holdout_shares": dg.MetadataValue.json(shares),
            "per_campaign": dg.MetadataValue.md(markdown_table(per_campaign(rows, config), 20)),
            "policies": dg.MetadataValue.md(policies),
            "discounting": dg.MetadataValue.json({"rate": config.discount_rate, "years": config.npv_years}),
            "annualization": (
                f"net saving over {money['campaign_days_covered']} days of campaigns (at their observed cadence) "
                "x 365 / those days: assumes campaigns go on at that cadence and effect"
            ),
        }
        if len(shares) > 1:
            metadata["pooling_note"] = (
                f"holdout shares differ across the pooled campaigns ({shares}); the per-campaign rows are exact"
            )
        for name in ("uplift", "risk"):
            if scores:
                metadata[f"{name}_policy_net_saving_eur"] = scores[f"{name}_policy"]["net_saving_eur"]
                metadata[f"{name}_policy_qini"] = scores[f"qini_{name}"]
    else:
        metadata["figures"] = f"none: {why_not}"
    if history.height:
        metadata["reduction_over_time"] = as_metadata(png_bytes(effect_over_time(history)))
        metadata["net_saving_over_time"] = as_metadata(
            png_bytes(metric_over_time(history, "net_saving_eur", "Measured net saving (EUR)", [0.0]))
        )
    yield dg.MaterializeResult(metadata=metadata)
    yield dg.AssetCheckResult(
        check_name=EFFECT_CHECK,
        passed=passed,
        severity=severity,
        description=text,
        metadata={"partition": day.isoformat(), "p_value": effect.p_value if effect else "not evaluated"},
    )
