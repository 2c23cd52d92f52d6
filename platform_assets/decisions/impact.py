"""What the campaigns measurably did: contacted against holdout, once their outcomes matured.

The comparison is the campaign log's two arms, both drawn from the same ranked set by
the campaign's hash, joined with the outcome the dataset's outcome model holds for the
campaign day (churn within the label horizon after it). Campaign ids hold out different
shares of customers whose base churn differs, so the figures decided on are stratified by
campaign and the check's test is sequential over its daily looks (``sequential_test``);
the pooled two-arm comparison (Newcomb's interval, the Agresti-Caffo test of statsmodels)
is shown beside them and per campaign, where it is exact. The money follows from the
stratified difference and its interval, so a saving is never reported tighter than the
churn difference it rests on. Without matured outcomes there is no figure, only the day
they mature.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING

import dagster as dg
import numpy as np
import polars as pl
from pydantic import Field

from platform_assets.campaign_log import CONTACT, HOLDOUT, matured_log
from platform_assets.decisions.sequential_test import (
    COUNTS,
    DESIGN,
    HARM,
    Look,
    Sequential,
    Stratified,
    dropped_strata,
    sequential_test,
    strata_counts,
    stratify,
)
from platform_assets.decisions.uplift import policy_comparison
from platform_assets.metadata import markdown_table

if TYPE_CHECKING:
    from platform_assets.decisions.scope import DecisionScope

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


def economics(
    effect: Effect | Stratified, customer_value: float, offer_cost: float, days: int, config: ImpactConfig
) -> dict:
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


@dataclass(frozen=True)
class Impact:
    """The pooled comparison (shown, never decided on), the stratified effect and the sequential test."""

    pooled: Effect
    stratified: Stratified
    sequential: Sequential


def economics_of(effect: Effect | Stratified, rows: pl.DataFrame, config: ImpactConfig) -> dict:
    """``economics`` of the matured log rows an effect was measured on: their contacted customers' value and cost."""
    contacted = rows.filter(pl.col("arm") == CONTACT)
    return economics(
        effect,
        float(contacted["customer_value"].mean()),
        float(contacted["offer_cost"].sum()),
        days_covered(rows),
        config,
    )


def days_covered(rows: pl.DataFrame) -> int:
    """Days from the first to the last campaign day, plus one observed cadence (the median gap)."""
    days = sorted(set(rows["ds"].to_list()))
    gaps = np.diff(np.array(days, dtype="datetime64[D]")).astype(int)
    cadence = int(np.median(gaps)) if len(gaps) else 1
    return (days[-1] - days[0]).days + cadence


def pooled_effect(rows: pl.DataFrame, alpha: float) -> Effect:
    """Contacted against holdout over every row, as if one campaign."""
    contacted, holdout = (rows.filter(pl.col("arm") == arm) for arm in (CONTACT, HOLDOUT))
    return measure(
        int(contacted["churned"].sum()), contacted.height, int(holdout["churned"].sum()), holdout.height, alpha
    )


def summarize(rows: pl.DataFrame, config: ImpactConfig) -> tuple[Impact | None, dict, str]:
    """The effect (stratified by campaign, tested sequentially) and money over matured log rows, or why none.

    The money rests on the stratified difference and covers the customers of the campaigns it
    uses (value and offer cost of their contacted customers); left-out campaigns are named.
    """
    sizes = {arm: rows.filter(pl.col("arm") == arm).height for arm in (CONTACT, HOLDOUT)}
    if min(sizes.values()) < config.min_outcomes_per_arm:
        return (
            None,
            {},
            (
                f"only {sizes[CONTACT]} contacted and {sizes[HOLDOUT]} holdout outcomes have matured "
                f"(at least {config.min_outcomes_per_arm} per arm needed)"
            ),
        )
    counts = strata_counts(rows)
    by_campaign = counts.group_by("campaign").agg(pl.col(COUNTS).sum()).sort("campaign")
    campaigns, totals = by_campaign["campaign"].to_list(), by_campaign.select(COUNTS).to_numpy()
    stratified = stratify(campaigns, totals, config.alpha)
    if stratified is None:
        return None, {}, f"no campaign can be compared within itself: {dropped_strata(campaigns, totals)}"
    if min(stratified.contacted, stratified.holdout) < config.min_outcomes_per_arm:
        return (
            None,
            {},
            (
                f"only {stratified.contacted} contacted and {stratified.holdout} holdout outcomes in campaigns "
                f"with both arms and churn variation (at least {config.min_outcomes_per_arm} per arm needed); "
                f"{stratified.dropped}"
            ),
        )
    used = rows.filter(pl.col("campaign").is_in(list(stratified.campaigns)))
    money = economics_of(stratified, used, config)
    sequential = sequential_test(counts, config.alpha, config.min_outcomes_per_arm)
    return Impact(pooled_effect(rows, config.alpha), stratified, sequential), money, ""


def _figures(impact: Impact) -> str:
    s, p, look = impact.stratified, impact.pooled, impact.sequential.current
    tested = f"p = {s.p_value:.3g}" if look.p_value is not None else "not testable at this look"
    return (
        f"stratified by campaign ({len(s.campaigns)} campaigns, CMH): churn difference {s.difference:+.3f} "
        f"(fixed-sample 95% CI {s.difference_low:+.3f}..{s.difference_high:+.3f}), MH odds ratio "
        f"{s.odds_ratio:.3f}, {tested} on {s.contacted} + {s.holdout} matured outcomes; pooled over campaigns "
        f"(not decided on): {p.contacted_rate:.3f} contacted vs {p.holdout_rate:.3f} holdout, difference "
        f"{p.difference:+.3f} (95% CI {p.difference_low:+.3f}..{p.difference_high:+.3f}, p = {p.p_value:.3g})"
        + (f"; {s.dropped}" if s.dropped else "")
    )


def _look(look: Look, alpha: float) -> str:
    information = f"information fraction {look.information:.2f}" if look.information is not None else "no plan"
    return (
        f"look {look.number} (campaign day {look.day}, {information}, alpha {look.alpha_at_look:.2g} at this look, "
        f"{look.alpha_spent:.2g} of {alpha:g} spent so far)"
    )


def judge(impact: Impact | None, why_not: str) -> tuple[bool, dg.AssetCheckSeverity, str]:
    """The campaign_effect check on the stratified, sequential test: ERROR on declared harm; WARN on no
    declared effect once the planned size is reached.

    The verdict is the first look whose p-value fell below its alpha (a stopped group-sequential
    test), recomputed from the log each day, so a re-run says the same. Before the planned size
    an undeclared effect is what the power analysis predicts, so the check passes, inconclusive.
    """
    if impact is None:
        return False, dg.AssetCheckSeverity.WARN, f"not evaluated: {why_not}"
    sequential = impact.sequential
    current, decisive = sequential.current, sequential.decisive
    text = f"{_figures(impact)}; {DESIGN}, now at {_look(current, sequential.alpha)}"
    if not current.planned:
        return False, dg.AssetCheckSeverity.WARN, f"not evaluated sequentially: no planned_contacts logged; {text}"
    if decisive is not None:
        when = (
            f"declared at {_look(decisive, sequential.alpha)}: p = {decisive.p_value:.3g} < "
            f"{decisive.alpha_at_look:.2g}, MH odds ratio {decisive.odds_ratio:.3f}"
        )
        if decisive.declared == HARM:
            return False, dg.AssetCheckSeverity.ERROR, f"contact does harm, {when}; {text}"
        return True, dg.AssetCheckSeverity.WARN, f"significant reduction, {when}; {text}"
    if current.information < 1:
        return (
            True,
            dg.AssetCheckSeverity.WARN,
            (
                f"inconclusive so far: {current.contacted} of the {current.planned} contacts the power analysis "
                f"planned have matured, so no verdict before then; {text}"
            ),
        )
    return (
        False,
        dg.AssetCheckSeverity.WARN,
        f"no significant effect at its planned size ({current.planned} contacts), and its alpha is spent; {text}",
    )


def per_campaign(rows: pl.DataFrame, config: ImpactConfig) -> pl.DataFrame:
    """One row per campaign id: the two-arm comparison within it (its arms share one holdout share)."""
    out = []
    for (campaign,), group in rows.group_by("campaign", maintain_order=True):
        contacted = group.filter(pl.col("arm") == CONTACT)
        holdout = group.filter(pl.col("arm") == HOLDOUT)
        effect, saving, note = None, None, ""
        if min(contacted.height, holdout.height) < config.min_outcomes_per_arm:
            note = (
                f"only {contacted.height} contacted and {holdout.height} holdout outcomes "
                f"(at least {config.min_outcomes_per_arm} per arm needed)"
            )
        else:
            effect = pooled_effect(group, config.alpha)
            money = economics_of(effect, group, config)
            saving = money["net_saving_eur"]
        out.append(
            {
                "campaign": campaign,
                "contacted": contacted.height,
                "holdout": holdout.height,
                "difference": effect.difference if effect else None,
                "ci_low": effect.difference_low if effect else None,
                "ci_high": effect.difference_high if effect else None,
                "p_value": effect.p_value if effect else None,
                "net_saving_eur": saving,
                "note": note,
            }
        )
    return pl.DataFrame(out).sort("campaign")


def impact_row(day: date, horizon_days: int, rows: pl.DataFrame, impact: Impact | None, money: dict, text: str):
    """The day's stored row: the stratified figures the check decided on, the pooled ones beside them."""
    row: dict = {
        "ds": day,
        "matured_through": day - timedelta(days=horizon_days),
        "campaign_days": rows["ds"].n_unique() if rows.height else 0,
        "status": text,
    }
    if impact is None:
        return row | {"contacted": 0, "holdout": 0}
    pooled, stratified, look = impact.pooled, impact.stratified, impact.sequential.current
    return row | {
        "campaigns": len(stratified.campaigns),
        "contacted": pooled.contacted,
        "holdout": pooled.holdout,
        "contacted_rate": pooled.contacted_rate,
        "holdout_rate": pooled.holdout_rate,
        "difference": stratified.difference,
        "difference_low": stratified.difference_low,
        "difference_high": stratified.difference_high,
        "odds_ratio": stratified.odds_ratio,
        "p_value": stratified.p_value,
        "pooled_difference": pooled.difference,
        "pooled_p_value": pooled.p_value,
        "look": look.number,
        "information_fraction": look.information,
        "alpha_at_look": look.alpha_at_look,
        "alpha_spent": look.alpha_spent,
        "declared": impact.sequential.decisive.declared if impact.sequential.decisive else None,
        **{k: money[k] for k in ("net_saving_eur", "net_saving_eur_low", "net_saving_eur_high", "roi")},
    }


def _bounds(low: float, high: float) -> dg.MetadataValue:
    """An interval as JSON; an unbounded or undefined end (an arm without churners) as null."""
    return dg.MetadataValue.json([v if np.isfinite(v) else None for v in (low, high)])


def effect_metadata(impact: Impact) -> dict:
    """Pooled and stratified figures side by side, and where the sequential test stands."""
    pooled, stratified, sequential = impact.pooled, impact.stratified, impact.sequential
    decisive = sequential.decisive
    return {
        "churn_contacted": pooled.contacted_rate,
        "churn_holdout": pooled.holdout_rate,
        "absolute_reduction": -stratified.difference,
        "absolute_reduction_95ci": dg.MetadataValue.json([-stratified.difference_high, -stratified.difference_low]),
        "odds_ratio_mh": stratified.odds_ratio,
        "odds_ratio_mh_95ci": _bounds(stratified.odds_ratio_low, stratified.odds_ratio_high),
        "cmh_statistic": stratified.cmh_statistic,
        "p_value": stratified.p_value,
        "strata": dg.MetadataValue.json(list(stratified.campaigns)),
        "strata_left_out": stratified.dropped or "none",
        "stratified_contacted_outcomes": stratified.contacted,
        "stratified_holdout_outcomes": stratified.holdout,
        "pooled_absolute_reduction": -pooled.difference,
        "pooled_absolute_reduction_95ci": dg.MetadataValue.json([-pooled.difference_high, -pooled.difference_low]),
        "pooled_relative_reduction": pooled.relative_reduction,
        "pooled_relative_reduction_95ci": _bounds(pooled.relative_reduction_low, pooled.relative_reduction_high),
        "pooled_p_value": pooled.p_value,
        "contacted_outcomes": pooled.contacted,
        "holdout_outcomes": pooled.holdout,
        "estimates": (
            "absolute_reduction: the campaigns' churn differences combined with inverse-variance weights "
            "(fixed-sample interval, not widened for repeated looks); p_value: Cochran-Mantel-Haenszel by campaign; "
            "pooled_*: one table over all campaigns, shown for comparison only (biased when holdout shares and "
            "base churn differ by campaign)"
        ),
        **sequential_metadata(sequential),
        "verdict_look": decisive.number if decisive else "none declared",
        "looks": dg.MetadataValue.md(markdown_table(sequential.as_frame().reverse(), 30)),
    }


def sequential_metadata(sequential: Sequential) -> dict:
    look = sequential.current
    return {
        "sequential_design": DESIGN,
        "look": look.number,
        "information_fraction": look.information if look.information is not None else "no planned_contacts",
        "planned_contacts": look.planned if look.planned is not None else "not logged",
        "alpha_at_look": look.alpha_at_look,
        "alpha_spent": look.alpha_spent,
        "alpha": sequential.alpha,
    }


def report_impact(
    context: dg.AssetExecutionContext, config: ImpactConfig, lake, warehouse, registry, spec, scope: DecisionScope
):
    """Measure every matured campaign day up to the partition, store the day's row, check the effect."""
    from platform_assets.plots import as_metadata, effect_over_time, metric_over_time, png_bytes

    day = date.fromisoformat(context.partition_key)
    outcome = spec.outcome
    rows, note = matured_log(lake, warehouse, outcome, day, scope.campaign_log)
    impact, money, why_not = summarize(rows, config) if rows.height else (None, {}, note)
    shares = sorted(set(rows["holdout_share"].round(4).to_list())) if rows.height else []
    passed, severity, text = judge(impact, why_not)
    row = impact_row(day, outcome.horizon_days, rows, impact, money, text)
    frame = pl.DataFrame([row], schema=scope.campaign_impact.schema)
    version = lake.replace_days(scope.campaign_impact, frame, day, day, add_columns=True)
    history = lake.scan(scope.campaign_impact).filter(pl.col("difference").is_not_null()).collect()
    context.log.info(f"{day}: {text}")
    metadata: dict = {
        "status": text,
        "matured_through": row["matured_through"].isoformat(),
        "dagster/row_count": rows.height,
        "dagster/uri": lake.uri(scope.campaign_impact),
        "delta_version": version,
    }
    check_metadata: dict = {"partition": day.isoformat(), "p_value": "not evaluated"}
    if impact is not None:
        scores, policies = policy_comparison(
            rows, warehouse, registry, spec, money["offer_cost_eur"] / impact.stratified.contacted, scope.uplift_model
        )
        metadata |= {
            **effect_metadata(impact),
            **{k: float(v) for k, v in money.items()},
            "money_covers": (
                f"the {impact.stratified.contacted} contacted customers of the campaigns the stratified difference uses"
            ),
            "holdout_shares": dg.MetadataValue.json(shares),
            "per_campaign": dg.MetadataValue.md(markdown_table(per_campaign(rows, config), 20)),
            "policies": dg.MetadataValue.md(policies),
            "discounting": dg.MetadataValue.json({"rate": config.discount_rate, "years": config.npv_years}),
            "annualization": (
                f"net saving over {money['campaign_days_covered']} days of campaigns (at their observed cadence) "
                "x 365 / those days: assumes campaigns go on at that cadence and effect"
            ),
        }
        for name in ("uplift", "risk"):
            if scores:
                metadata[f"{name}_policy_net_saving_eur"] = scores[f"{name}_policy"]["net_saving_eur"]
                metadata[f"{name}_policy_qini"] = scores[f"qini_{name}"]
        decisive = impact.sequential.decisive
        check_metadata |= {
            "p_value": impact.stratified.p_value,
            "pooled_p_value": impact.pooled.p_value,
            "odds_ratio_mh": impact.stratified.odds_ratio,
            "absolute_reduction": -impact.stratified.difference,
            **sequential_metadata(impact.sequential),
            "declared": f"{decisive.declared} at look {decisive.number}" if decisive else "none",
        }
    else:
        metadata["figures"] = f"none: {why_not}"
    if history.height:
        metadata["reduction_over_time"] = as_metadata(png_bytes(effect_over_time(history)))
        metadata["net_saving_over_time"] = as_metadata(
            png_bytes(metric_over_time(history, "net_saving_eur", "Measured net saving (EUR)", [0.0]))
        )
    yield dg.MaterializeResult(metadata=metadata)
    yield dg.AssetCheckResult(
        check_name=EFFECT_CHECK, passed=passed, severity=severity, description=text, metadata=check_metadata
    )
