"""The statistics a campaign's value rests on, against the simulator's known truth.

Fast and vectorized: the real simulator reacts to contacts, the real hash assigns the
arms and the real estimator measures, over many seeded small worlds, without Dagster.
The check's test (stratified by campaign, sequential over daily looks) runs on plain
numpy worlds of the matured log rows ``summarize`` consumes, where the truth is set.
"""

from dataclasses import replace
from datetime import date, timedelta

import dagster as dg
import numpy as np
import polars as pl
import pytest
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import proportion_effectsize

from platform_assets.campaign_log import CONTACT, HOLDOUT
from platform_assets.decisions.assignment import assign, holdout_draw, plan_holdout
from platform_assets.decisions.impact import Impact, ImpactConfig, judge, measure, summarize
from platform_assets.decisions.sequential_test import REDUCTION, sequential_test, spending, strata_counts
from simulator.config import SimulatorConfig
from simulator.treatment import EFFECT_DAYS
from simulator.world import simulate, simulate_windows

WORLDS = 100
CONTACT_DAY = 45


def run_world(seed: int, holdout_share: float = 0.5) -> dict:
    """One small world: low-usage customers targeted on a day, split by the campaign hash, outcomes 30 days on."""
    config = SimulatorConfig(customers=4000, days=CONTACT_DAY + EFFECT_DAYS + 1, seed=seed)
    contact_day = config.start + timedelta(days=CONTACT_DAY)
    before = simulate(config, config.start, contact_day)
    gone = before["cancellations"].select("customer_id")
    active = before["customers"].join(gone, on="customer_id", how="anti").select("customer_id")
    usage = (
        before["sessions"]
        .filter(pl.col("ds") > contact_day - timedelta(days=21))
        .group_by("customer_id")
        .agg(pl.len().alias("sessions"))
    )
    ranked = active.join(usage, on="customer_id", how="left").with_columns(pl.col("sessions").fill_null(0))
    targeted = ranked.filter(pl.col("sessions") <= ranked["sessions"].quantile(0.4))["customer_id"].to_numpy()
    arm = assign(f"world-{seed}", seed, targeted, holdout_share)
    contacts = pl.DataFrame(
        {"customer_id": targeted[arm == CONTACT], "contacted_on": contact_day},
        schema={"customer_id": pl.Int64, "contacted_on": pl.Date},
    )
    truth: list[pl.DataFrame] = []
    after = next(simulate_windows(config, [(config.start, config.end)], contacts=contacts, truth=truth))
    churned = after["cancellations"].filter(
        pl.col("ds").is_between(contact_day + timedelta(days=1), contact_day + timedelta(days=EFFECT_DAYS))
    )["customer_id"]
    outcome = np.isin(targeted, churned.to_numpy())
    everyone_else = ranked.filter(~pl.col("customer_id").is_in(targeted))["customer_id"].to_numpy()
    return {
        "contact": outcome[arm == CONTACT],
        "holdout": outcome[arm == HOLDOUT],
        "untargeted": np.isin(everyone_else, churned.to_numpy()),
        "true_effect": float(truth[0]["effect"].mean()),
        "truth": truth[0],
    }


@pytest.fixture(scope="module")
def worlds():
    return [run_world(seed) for seed in range(WORLDS)]


def covered(effect, truth: float) -> bool:
    return effect.difference_low <= truth <= effect.difference_high


def test_the_95_interval_covers_the_true_average_effect(worlds):
    effects = [
        measure(int(w["contact"].sum()), len(w["contact"]), int(w["holdout"].sum()), len(w["holdout"]), 0.05)
        for w in worlds
    ]
    hits = sum(covered(e, w["true_effect"]) for e, w in zip(effects, worlds, strict=True))
    assert hits >= 90, f"the interval covered the truth in {hits} of {WORLDS} worlds"
    # The truth is an effect, not zero, so covering it says something.
    truths = np.array([w["true_effect"] for w in worlds])
    assert truths.mean() < -0.01 and (truths < 0).all()
    estimates = np.array([e.difference for e in effects])
    assert abs(estimates.mean() - truths.mean()) < 0.01


def test_a_biased_comparison_would_fail_the_same_test(worlds):
    """Contacted against customers who were never targeted: the coverage test catches the bias."""
    effects = [
        measure(int(w["contact"].sum()), len(w["contact"]), int(w["untargeted"].sum()), len(w["untargeted"]), 0.05)
        for w in worlds
    ]
    hits = sum(covered(e, w["true_effect"]) for e, w in zip(effects, worlds, strict=True))
    assert hits < 50


def test_the_world_has_sleeping_dogs_whom_contact_harms(worlds):
    truth = pl.concat([w["truth"] for w in worlds[:10]])
    by_segment = truth.group_by("segment").agg(pl.col("effect").mean()).to_dict(as_series=False)
    effect = dict(zip(by_segment["segment"], by_segment["effect"], strict=True))
    assert effect["sleeping_dog"] > 0.02 > 0 > -0.02 > effect["persuadable"]
    assert abs(effect["lost_cause"]) < 1e-9


def test_no_contact_leaves_the_world_exactly_as_it_was():
    config = SimulatorConfig(customers=1500, days=60, seed=3)
    plain = simulate(config, config.start, config.end)
    empty = pl.DataFrame(schema={"customer_id": pl.Int64, "contacted_on": pl.Date})
    again = next(simulate_windows(config, [(config.start, config.end)], contacts=empty))
    for table, frame in plain.items():
        assert frame.equals(again[table]), table


def test_contacts_change_only_the_days_after_them():
    config = SimulatorConfig(customers=1500, days=60, seed=3)
    day = config.start + timedelta(days=30)
    plain = simulate(config, config.start, config.end)
    ids = plain["customers"]["customer_id"].head(400)
    contacts = pl.DataFrame(
        {"customer_id": ids, "contacted_on": day}, schema={"customer_id": pl.Int64, "contacted_on": pl.Date}
    )
    treated = next(simulate_windows(config, [(config.start, config.end)], contacts=contacts))
    for table, frame in plain.items():
        assert frame.filter(pl.col("ds") <= day).equals(treated[table].filter(pl.col("ds") <= day)), table
    assert not plain["cancellations"].equals(treated["cancellations"])


def test_assignment_is_a_reproducible_hash_of_campaign_and_customer():
    ids = np.arange(1, 20_001)
    first = assign("retention-2026-05-01", 7, ids, 0.2)
    assert (first == assign("retention-2026-05-01", 7, ids, 0.2)).all()
    assert (first == assign("retention-2026-05-01", 7, ids[::-1], 0.2)[::-1]).all()  # per customer, not per row
    assert (first[:100] == assign("retention-2026-05-01", 7, ids[:100], 0.2)).all()
    assert abs((first == HOLDOUT).mean() - 0.2) < 0.01
    other = assign("retention-2026-05-29", 7, ids, 0.2)
    assert 0.25 < (first != other).mean() < 0.4  # another campaign, fresh arms (2 x 0.2 x 0.8 = 0.32)
    draws = holdout_draw("retention-2026-05-01", 7, ids)
    assert draws.min() >= 0.0 and draws.max() < 1.0 and abs(draws.mean() - 0.5) < 0.01


@pytest.mark.parametrize(("base_rate", "mde", "contacts"), [(0.3, 0.05, 5600), (0.15, 0.03, 20_000), (0.4, 0.1, 900)])
def test_the_holdout_is_what_the_power_analysis_of_statsmodels_asks(base_rate, mde, contacts):
    plan = plan_holdout(base_rate, mde, contacts, alpha=0.05, power=0.8, shares=(0.01, 0.6))
    effect = abs(proportion_effectsize(base_rate, base_rate - mde))
    assert plan.effect_size == pytest.approx(effect)
    ratio = NormalIndPower().solve_power(effect, nobs1=contacts, alpha=0.05, power=0.8, ratio=None)
    assert plan.required_holdout == int(np.ceil(ratio * contacts))
    power = NormalIndPower().power(effect, nobs1=contacts, alpha=0.05, ratio=plan.required_holdout / contacts)
    assert power >= 0.8
    fewer = NormalIndPower().power(effect, nobs1=contacts, alpha=0.05, ratio=(plan.required_holdout - 2) / contacts)
    assert fewer < 0.8
    assert plan.holdout_share == pytest.approx(plan.required_holdout / (plan.required_holdout + contacts))


def test_an_underpowered_plan_says_so():
    plan = plan_holdout(0.1, 0.01, 300, shares=(0.05, 0.5))
    assert plan.required_holdout is None and plan.holdout_share == 0.5
    assert plan.achieved_power < 0.8 and plan.note.startswith("underpowered")


# The check's test on worlds of matured log rows: two campaigns one after the other, the first
# holding out 0.468 of customers who rarely churn, the second 0.332 of customers who often do
# (the shares in docs/decisions.md), so pooling both arms over campaigns shows an effect where there is none.
START = date(2026, 6, 1)
SHARES, BASE_CHURN = (0.468, 0.332), (0.06, 0.25)
CONFIG = ImpactConfig()


def campaign_rows(seed: int, days: int, per_day: int, effect: float = 0.0, planned: int | None = None) -> pl.DataFrame:
    """``per_day`` targeted customers a day; the first half of the days campaign a, the rest b."""
    rng = np.random.default_rng(seed)
    offset = np.repeat(np.arange(days), per_day)
    second = offset >= days // 2
    share, base = np.where(second, SHARES[1], SHARES[0]), np.where(second, BASE_CHURN[1], BASE_CHURN[0])
    holdout = rng.random(offset.size) < share
    return pl.DataFrame(
        {
            "customer_id": np.arange(offset.size),
            "campaign": np.where(second, "retention-b", "retention-a"),
            "arm": np.where(holdout, HOLDOUT, CONTACT),
            "churned": rng.random(offset.size) < np.where(holdout, base, base + effect),
            "ds": np.datetime64(START) + offset.astype("timedelta64[D]"),
            "holdout_share": share,
            "planned_contacts": planned,
            "customer_value": 400.0,
            "offer_cost": 15.0,
        },
        schema_overrides={"ds": pl.Date, "planned_contacts": pl.Int64},
    )


def declared(rows: pl.DataFrame) -> str | None:
    """What the campaign_effect check declares on these rows: reduction, harm, or nothing."""
    return judged(rows)[0]


def judged(rows: pl.DataFrame) -> tuple[str | None, Impact]:
    impact, _, why_not = summarize(rows, CONFIG)
    assert impact is not None, why_not
    text = judge(impact, why_not)[2]
    decisive = impact.sequential.decisive
    assert (decisive is not None) == text.startswith(("significant reduction", "contact does harm")), text
    return (decisive.declared if decisive else None), impact


def test_stratifying_by_campaign_removes_the_effect_pooling_invents():
    """No true effect, two campaigns of different holdout shares and base churn, one campaign day each."""
    stratified = pooled = fixed = 0
    pooled_differences, stratified_differences = [], []
    for seed in range(WORLDS):
        rows = campaign_rows(seed, days=2, per_day=3000, planned=3000)
        impact, _, _ = summarize(rows, CONFIG)
        stratified += declared(rows) is not None
        fixed += impact.stratified.p_value < CONFIG.alpha  # the CMH test alone, at a fixed 0.05
        pooled += impact.pooled.p_value < CONFIG.alpha
        pooled_differences.append(impact.pooled.difference)
        stratified_differences.append(impact.stratified.difference)
    print(f"no effect, {WORLDS} worlds: check {stratified}, fixed-level CMH {fixed}, pooled {pooled} declared")
    assert stratified <= 5 and fixed <= 5
    assert pooled >= 50, f"pooling declared an effect in only {pooled} of {WORLDS} worlds"
    assert np.mean(pooled_differences) > 0.02 > 0.005 > abs(np.mean(stratified_differences))


def test_daily_looks_keep_the_false_positive_rate_at_alpha():
    """60 daily looks (a campaign day matures each day) with no effect: the check declares in at most 5%."""
    ever = peeking = 0
    for seed in range(WORLDS):
        rows = campaign_rows(1000 + seed, days=60, per_day=100, planned=3600)
        verdict, impact = judged(rows)
        ever += verdict is not None  # the verdict is the first look that declared, so "ever"
        looks = impact.sequential.looks
        assert len(looks) == 60 and looks[-1].information > 0.95 and looks[-1].alpha_spent <= CONFIG.alpha
        peeking += any(look.p_value is not None and look.p_value < CONFIG.alpha for look in looks)
    print(f"no effect, 60 looks, {WORLDS} worlds: sequential {ever}, a fixed 0.05 at every look {peeking}")
    assert ever <= 5
    assert peeking > 15, "testing each look at a fixed alpha should show why the design is needed"


def test_a_real_reduction_is_still_declared_at_the_planned_size():
    """A 3-point churn reduction in both campaigns: declared as a reduction in most worlds, harm in none."""
    verdicts = [declared(campaign_rows(2000 + seed, 60, 100, effect=-0.03, planned=3600)) for seed in range(WORLDS)]
    print(f"3-point reduction, 60 looks, {WORLDS} worlds: declared in {verdicts.count(REDUCTION)}")
    assert verdicts.count(REDUCTION) >= 70 and "harm" not in verdicts


def test_each_days_verdict_is_recomputed_from_the_log_alone():
    """The check on day d sees the looks through d; earlier looks are the same from any later day, so a
    re-run of a day says the same, and a declaration, once made, stands."""
    rows = campaign_rows(7, 60, 100, effect=-0.05, planned=3600)
    full = sequential_test(strata_counts(rows), CONFIG.alpha, CONFIG.min_outcomes_per_arm)
    first = full.decisive
    assert first is not None and 1 < first.number < 60
    for look in (1, first.number - 1, first.number, 45, 60):
        through = rows.filter(pl.col("ds") <= START + timedelta(days=look - 1))
        again = sequential_test(strata_counts(through), CONFIG.alpha, CONFIG.min_outcomes_per_arm)
        assert again.looks == full.looks[:look]
        assert declared(through) == (REDUCTION if look >= first.number else None)
    assert summarize(rows, CONFIG)[0] == summarize(rows, CONFIG)[0]


def test_the_spending_function_spends_alpha_by_information():
    assert spending(1.0, 0.05) == pytest.approx(0.05) and spending(1.7, 0.05) == pytest.approx(0.05)
    assert spending(0.5, 0.05) == pytest.approx(0.00557, abs=1e-5)  # 2 - 2 Phi(1.96 / sqrt(0.5))
    assert spending(0.0, 0.05) == 0.0
    steps = [spending(t, 0.05) for t in np.linspace(0.05, 1, 20)]
    assert (np.diff(steps) > 0).all()
    # A campaign with a larger plan arrives: information falls, the spent alpha does not.
    rows = pl.concat(
        [
            campaign_rows(3, 10, 100, planned=800).filter(pl.col("campaign") == "retention-a"),
            campaign_rows(4, 10, 100, planned=5000).filter(pl.col("campaign") == "retention-b"),
        ]
    )
    looks = sequential_test(strata_counts(rows), 0.05, 30).looks
    assert looks[4].information > 0.3 > looks[5].information  # day 6: the first of campaign b
    assert looks[5].alpha_at_look == 0.0 and looks[5].alpha_spent == looks[4].alpha_spent
    assert sum(look.alpha_at_look for look in looks) == pytest.approx(looks[-1].alpha_spent)
    assert looks[-1].alpha_spent < 0.05


def one_campaign(campaign: str, contacted_churned: int, contacted: int, held_churned: int, holdout: int, planned):
    """Matured rows of one campaign day with exactly these counts (in the order of ``measure``)."""
    arm = [CONTACT] * contacted + [HOLDOUT] * holdout
    churned = [i < contacted_churned for i in range(contacted)] + [i < held_churned for i in range(holdout)]
    return pl.DataFrame(
        {
            "campaign": campaign,
            "arm": arm,
            "churned": churned,
            "ds": START,
            "planned_contacts": planned,
            "customer_value": 400.0,
            "offer_cost": 15.0,
        },
        schema_overrides={"planned_contacts": pl.Int64},
    )


def test_the_effect_check_judges_at_the_planned_size():
    """Undeclared below the planned size is inconclusive (passes); at it, a warning; harm fails at any size."""

    def check(*counts, planned):
        impact, _, why_not = summarize(one_campaign("c", *counts, planned), CONFIG)
        return judge(impact, why_not)

    passed, severity, text = check(40, 400, 21, 200, planned=1000)  # 10% vs 10.5%: no effect
    assert passed and text.startswith("inconclusive so far") and "400 of the 1000" in text
    assert "look 1 (campaign day 2026-06-01, information fraction 0.40" in text and "O'Brien-Fleming" in text
    passed, severity, text = check(40, 400, 21, 200, planned=400)
    assert not passed and severity == dg.AssetCheckSeverity.WARN and "at its planned size (400 contacts)" in text
    assert "0.05 of 0.05 spent so far" in text
    passed, severity, text = check(100, 400, 20, 200, planned=1000)  # 25% contacted vs 10% held out
    assert not passed and severity == dg.AssetCheckSeverity.ERROR and text.startswith("contact does harm")
    passed, _, text = check(20, 400, 20, 200, planned=1000)  # 5% vs 10%: p about 0.02, not at 0.0019
    assert passed and text.startswith("inconclusive so far") and "alpha 0.0019 at this look" in text
    passed, _, text = check(20, 400, 20, 200, planned=400)
    assert passed and text.startswith("significant reduction, declared at look 1")
    passed, severity, text = check(20, 400, 20, 200, planned=None)
    assert not passed and severity == dg.AssetCheckSeverity.WARN and "no planned_contacts logged" in text
    assert judge(None, "nothing matured") == (False, dg.AssetCheckSeverity.WARN, "not evaluated: nothing matured")


def test_campaigns_without_a_comparison_are_left_out_and_named():
    base = one_campaign("a", 40, 400, 20, 200, 1000)
    no_holdout = one_campaign("b", 30, 300, 0, 0, 1000)
    no_churner = one_campaign("c", 0, 50, 0, 40, 1000)
    impact, money, _ = summarize(pl.concat([base, no_holdout, no_churner]), CONFIG)
    alone, alone_money, _ = summarize(base, CONFIG)
    assert impact.stratified == replace(alone.stratified, dropped=impact.stratified.dropped)
    assert "1 campaign(s) with one arm only left out (b: 300 customers)" in impact.stratified.dropped
    assert "1 campaign(s) with no churn variation in either arm left out (c: 90 customers)" in impact.stratified.dropped
    assert money == alone_money  # the money covers the campaigns the difference uses
    assert impact.pooled.contacted == 750  # the pooled figure still counts everyone
    assert "(b: 300 customers)" in judge(impact, "")[2]
    none, _, why_not = summarize(pl.concat([no_holdout, no_churner]), CONFIG)
    assert none is None and why_not.startswith("no campaign can be compared within itself: ")
