"""The statistics a campaign's value rests on, against the simulator's known truth.

Fast and vectorized: the real simulator reacts to contacts, the real hash assigns the
arms and the real estimator measures, over many seeded small worlds, without Dagster.
"""

from datetime import timedelta

import dagster as dg
import numpy as np
import polars as pl
import pytest
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import proportion_effectsize

from platform_assets.decisions.assignment import CONTACT, HOLDOUT, assign, holdout_draw, plan_holdout
from platform_assets.decisions.impact import judge, measure
from resources.simulator import SimulatorConfig, simulate, simulate_windows
from resources.treatment import EFFECT_DAYS

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
    plan = plan_holdout(base_rate, mde, contacts, alpha=0.05, power=0.8, min_share=0.01, max_share=0.6)
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
    plan = plan_holdout(0.1, 0.01, 300, max_share=0.5)
    assert plan.required_holdout is None and plan.holdout_share == 0.5
    assert plan.achieved_power < 0.8 and plan.note.startswith("underpowered")


def test_the_effect_check_judges_at_the_planned_size():
    """Insignificant below the planned size is inconclusive (passes); at it, a warning; harm fails at any size."""
    null = measure(40, 400, 21, 200, 0.05)  # 10% vs 10.5%: no effect
    assert null.p_value > 0.05
    passed, severity, text = judge(null, "", 1000, 0.05)
    assert passed and text.startswith("inconclusive so far") and "400 of the 1000" in text
    passed, severity, text = judge(null, "", 400, 0.05)
    assert not passed and severity == dg.AssetCheckSeverity.WARN and "at its planned size (400 contacts)" in text
    harm = measure(80, 400, 20, 200, 0.05)  # 20% contacted vs 10% held out
    passed, severity, text = judge(harm, "", 1000, 0.05)
    assert not passed and severity == dg.AssetCheckSeverity.ERROR and text.startswith("contact does harm")
    helped = measure(20, 400, 20, 200, 0.05)  # 5% vs 10%
    assert judge(helped, "", 1000, 0.05)[0]
    assert judge(None, "nothing matured", 1000, 0.05) == (
        False,
        dg.AssetCheckSeverity.WARN,
        "not evaluated: nothing matured",
    )
