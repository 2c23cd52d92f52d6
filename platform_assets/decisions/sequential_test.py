"""The test the ``campaign_effect`` check rests on: stratified by campaign, valid over daily looks.

**Stratified.** Campaign ids differ in holdout share and in base churn, so one two-arm table
of every campaign's customers mixes the campaigns in different proportions per arm and shows
an effect where there is none (Simpson's paradox). Each campaign id is a stratum (its arms
are hashed at one share). The test is Cochran-Mantel-Haenszel, with the Mantel-Haenszel odds
ratio and its Robins-Breslow-Greenland interval (statsmodels ``StratifiedTable``); the churn
difference the money needs is the campaigns' differences combined with inverse-variance
weights (statsmodels ``combine_effects``, its fixed-effect part: a common difference). A
campaign with one arm only compares nothing, and one without churn variation (nobody, or
everybody, churned in both arms) adds nothing to the CMH statistic and has no variance to
weigh by: both are left out and named, with their customers.

**Sequential.** ``campaign_impact`` is daily and its check runs every day; a test at a fixed
alpha on every look would declare a non-existent effect far more often than alpha. The design
is Lan-DeMets alpha spending with the O'Brien-Fleming-type function
``alpha(t) = 2 - 2 Phi(z_{1-alpha/2} / sqrt(t))``. Look k is the k-th campaign day to mature
and uses every matured row up to that campaign day, so every earlier look is recomputed from
the same log: no state, and re-running a day gives the same looks. Its information fraction
``t_k`` is the contacted customers (of campaigns with both arms) over the planned contacts
(the largest ``planned_contacts`` among those campaigns: the contacts the power analysis
sized a campaign's holdout for). Look k tests at the increment of spent alpha,
``max(spent, alpha(t_k)) - spent`` (so the spent alpha never falls when a larger plan
arrives), and the first look whose two-sided CMH p-value falls below its increment stops the
test, with the direction of the Mantel-Haenszel odds ratio. By the union bound the chance of
any false declaration is at most the sum of the increments, ``alpha(1) = alpha``: valid
without the numerical integration exact group-sequential boundaries need, and conservative
(successive looks share their data, so the true rate is lower). The increments depend on
customer counts only, never on outcomes; a look that cannot be tested (too few outcomes)
still spends its increment. Once ``t`` reaches 1 the alpha is spent: later outcomes are
reported, not tested again, and a changed programme needs a new plan.

The spending function (``platform_assets.sequential``, shared with the rollout) is one
line over scipy's normal distribution: statsmodels and scipy have none, and group-
sequential libraries (spotify-confidence) compute exact boundaries by recursive
integration, which the union bound does not need.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import polars as pl

from platform_assets.campaign_log import CONTACT, HOLDOUT
from platform_assets.sequential import spending

DESIGN = (
    "Lan-DeMets O'Brien-Fleming-type alpha spending, alpha(t) = 2 - 2 Phi(z_(1-alpha/2) / sqrt(t)), "
    "over looks at each matured campaign day; each look tests the stratified CMH p-value at its increment "
    "of spent alpha (union bound: conservative, valid without numerical integration)"
)
REDUCTION, HARM = "reduction", "harm"
# Columns of the per-stratum counts: contacted, contacted churned, holdout, holdout churned.
COUNTS = ["contacted", "contacted_churned", "holdout", "holdout_churned"]


@dataclass(frozen=True)
class Stratified:
    """The effect within campaigns, combined (difference = contacted - holdout churn)."""

    campaigns: tuple[str, ...]
    contacted: int
    contacted_churned: int
    holdout: int
    holdout_churned: int
    difference: float
    difference_low: float
    difference_high: float
    odds_ratio: float
    odds_ratio_low: float
    odds_ratio_high: float
    cmh_statistic: float
    p_value: float
    dropped: str


@dataclass(frozen=True)
class Look:
    """One look of the sequential test: the matured rows through one campaign day."""

    number: int
    day: date
    contacted: int
    planned: int | None
    information: float | None
    alpha_at_look: float
    alpha_spent: float
    p_value: float | None
    odds_ratio: float | None
    declared: str | None  # REDUCTION, HARM or None


@dataclass(frozen=True)
class Sequential:
    """Every look so far; the verdict is the first look that declared, else none yet."""

    alpha: float
    looks: tuple[Look, ...]

    @property
    def current(self) -> Look:
        return self.looks[-1]

    @property
    def decisive(self) -> Look | None:
        return next((look for look in self.looks if look.declared), None)

    def as_frame(self) -> pl.DataFrame:
        return pl.DataFrame(
            [
                {
                    "look": look.number,
                    "campaign_day": look.day,
                    "contacted": look.contacted,
                    "information": look.information,
                    "alpha_at_look": look.alpha_at_look,
                    "alpha_spent": look.alpha_spent,
                    "p_value": look.p_value,
                    "crossed": look.declared or "",
                }
                for look in self.looks
            ]
        )


def strata_counts(rows: pl.DataFrame) -> pl.DataFrame:
    """Per campaign day and campaign: both arms' matured outcomes and churners, and the planned contacts."""
    contact, holdout, churned = pl.col("arm") == CONTACT, pl.col("arm") == HOLDOUT, pl.col("churned")
    planned = (
        pl.col("planned_contacts").max().cast(pl.Int64)
        if "planned_contacts" in rows.columns
        else pl.lit(None, pl.Int64).first()
    )
    return (
        rows.group_by("ds", "campaign")
        .agg(
            contacted=contact.sum().cast(pl.Int64),
            contacted_churned=(contact & churned).sum().cast(pl.Int64),
            holdout=holdout.sum().cast(pl.Int64),
            holdout_churned=(holdout & churned).sum().cast(pl.Int64),
            planned=planned,
        )
        .sort("ds", "campaign")
    )


def _two_arms(counts: np.ndarray) -> np.ndarray:
    return (counts[:, 0] > 0) & (counts[:, 2] > 0)


def _informative(counts: np.ndarray) -> np.ndarray:
    """Both arms, and churn varies (not nobody, not everybody churned across the two arms)."""
    churned, customers = counts[:, 1] + counts[:, 3], counts[:, 0] + counts[:, 2]
    return _two_arms(counts) & (churned > 0) & (churned < customers)


def _table(counts: np.ndarray):
    """statsmodels' 2 x 2 x K table: rows contacted, holdout; columns churned, stayed."""
    from statsmodels.stats.contingency_tables import StratifiedTable

    a, b = counts[:, 1], counts[:, 0] - counts[:, 1]
    c, d = counts[:, 3], counts[:, 2] - counts[:, 3]
    return StratifiedTable(np.array([[a, b], [c, d]], dtype=float))


def dropped_strata(campaigns: list[str], counts: np.ndarray) -> str:
    """Which campaigns the stratified figures leave out, why, and how many customers they hold."""
    notes = []
    single = ~_two_arms(counts)
    flat = _two_arms(counts) & ~_informative(counts)
    for mask, why in ((single, "one arm only"), (flat, "no churn variation in either arm")):
        if mask.any():
            names = ", ".join(np.asarray(campaigns)[mask])
            customers = int(counts[mask][:, [0, 2]].sum())
            notes.append(f"{int(mask.sum())} campaign(s) with {why} left out ({names}: {customers} customers)")
    return "; ".join(notes)


def stratify(campaigns: list[str], counts: np.ndarray, alpha: float) -> Stratified | None:
    """CMH test, MH odds ratio and inverse-variance churn difference over the informative campaigns."""
    from statsmodels.stats.meta_analysis import combine_effects, effectsize_2proportions

    used = _informative(counts)
    if not used.any():
        return None
    kept = counts[used]
    table = _table(kept)
    test = table.test_null_odds()
    effect, variance = effectsize_2proportions(kept[:, 1], kept[:, 0], kept[:, 3], kept[:, 2], statistic="diff")
    # An arm without churners makes the odds ratio or its bounds infinite (reported as such); the
    # random-effects part of combine_effects divides by K - 1 and is not used.
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio, (ratio_low, ratio_high) = table.oddsratio_pooled, table.oddsratio_pooled_confint(alpha=alpha)
        combined = combine_effects(effect, variance, method_re="chi2", use_t=False, alpha=alpha)
        low, high = combined.conf_int(alpha=alpha, use_t=False)[0]
    return Stratified(
        tuple(np.asarray(campaigns)[used]),
        int(kept[:, 0].sum()),
        int(kept[:, 1].sum()),
        int(kept[:, 2].sum()),
        int(kept[:, 3].sum()),
        float(combined.mean_effect_fe),
        float(low),
        float(high),
        float(ratio),
        float(ratio_low),
        float(ratio_high),
        float(test.statistic),
        float(test.pvalue),
        dropped_strata(campaigns, counts),
    )


def sequential_test(counts: pl.DataFrame, alpha: float, min_per_arm: int) -> Sequential:
    """Every look over ``strata_counts`` (one per campaign day), each at its increment of spent alpha."""
    days = counts["ds"].unique().sort().to_list()
    campaigns = counts["campaign"].unique().sort().to_list()
    daily = np.zeros((len(days), len(campaigns), len(COUNTS)))
    day_index = counts["ds"].replace_strict(days, list(range(len(days)))).to_numpy()
    campaign_index = counts["campaign"].replace_strict(campaigns, list(range(len(campaigns)))).to_numpy()
    np.add.at(daily, (day_index, campaign_index), counts.select(COUNTS).to_numpy())
    cumulative = daily.cumsum(axis=0)
    planned = (
        counts.group_by("ds")
        .agg(pl.col("planned").max())
        .sort("ds")["planned"]
        .cum_max()
        .fill_null(strategy="forward")
        .to_list()
    )  # a day without a plan keeps the largest earlier one
    looks, spent = [], 0.0
    for k, day in enumerate(days):
        table = cumulative[k]
        contacted = int(table[_two_arms(table), 0].sum())
        information = contacted / planned[k] if planned[k] else None
        level = max(spent, spending(information, alpha)) - spent if information is not None else 0.0
        spent += level
        used = table[_informative(table)]
        p_value = ratio = None
        if len(used) and used[:, 0].sum() >= min_per_arm and used[:, 2].sum() >= min_per_arm:
            stratified = _table(used)
            with np.errstate(divide="ignore"):  # no holdout churner yet: the odds ratio is infinite (harm)
                p_value, ratio = float(stratified.test_null_odds().pvalue), float(stratified.oddsratio_pooled)
        declared = None
        if p_value is not None and p_value < level:
            declared = HARM if ratio > 1 else REDUCTION
        looks.append(Look(k + 1, day, contacted, planned[k], information, level, spent, p_value, ratio, declared))
    return Sequential(alpha, tuple(looks))
