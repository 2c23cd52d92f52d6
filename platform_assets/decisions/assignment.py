"""Randomized arms and the holdout's size: the two facts a campaign's measurement rests on.

Arms come from a seeded hash of the campaign and the customer, not from a random
stream: the same campaign always puts a customer in the same arm, an auditor can
recompute any assignment from three values, and re-running a day changes nothing.
The holdout's size is what a power analysis (statsmodels) asks for to detect the
smallest effect worth detecting with the planned number of contacts.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import partial

import numpy as np

from platform_assets.campaign_log import CONTACT, HOLDOUT
from platform_assets.stable_hash import hashed_uniform, text_seed


def campaign_seed(campaign: str, seed: int) -> int:
    """A 63-bit seed from the campaign's name and the assignment seed (SHA-256, so any string works)."""
    return text_seed(campaign, seed)


def holdout_draw(campaign: str, seed: int, customer_ids: np.ndarray) -> np.ndarray:
    """The assignment draw in [0, 1) of each customer for a campaign; below the holdout share means holdout."""
    return hashed_uniform(campaign_seed(campaign, seed), np.asarray(customer_ids, dtype=np.int64))


def assign(campaign: str, seed: int, customer_ids: np.ndarray, holdout_share: float) -> np.ndarray:
    """``holdout`` or ``contact`` per customer."""
    return np.where(holdout_draw(campaign, seed, customer_ids) < holdout_share, HOLDOUT, CONTACT)


@dataclass(frozen=True)
class PowerPlan:
    """The holdout a campaign needs, and why."""

    base_rate: float
    min_detectable_effect: float
    effect_size: float
    alpha: float
    power: float
    planned_contacts: int
    required_holdout: int | None  # None: no holdout is large enough
    holdout_share: float
    achieved_power: float
    note: str

    def as_dict(self) -> dict:
        return asdict(self)


def plan_holdout(
    base_rate: float,
    min_detectable_effect: float,
    planned_contacts: int,
    alpha: float = 0.05,
    power: float = 0.8,
    shares: tuple[float, float] = (0.05, 0.5),
) -> PowerPlan:
    """The holdout share for detecting an absolute churn reduction of ``min_detectable_effect`` from ``base_rate``.

    The contacts are fixed by the budget; the question is how many eligible customers to
    keep back. statsmodels' ``NormalIndPower.solve_power`` solves for the ratio
    holdout/contacts at the given power (two-sided, Cohen's h from ``proportion_effectsize``).
    The share is clipped to ``shares``, the smallest and largest holdout share; past the
    largest the plan says it is underpowered rather than pretend.
    """
    min_share, max_share = shares
    from statsmodels.stats.power import NormalIndPower
    from statsmodels.stats.proportion import proportion_effectsize

    target = max(base_rate - min_detectable_effect, 1e-6)
    effect = abs(float(proportion_effectsize(base_rate, target)))
    analysis = NormalIndPower()

    def achieved(share: float) -> float:
        holdout = planned_contacts * share / (1.0 - share)
        return float(analysis.power(effect, nobs1=planned_contacts, alpha=alpha, ratio=holdout / planned_contacts))

    # What is given, in PowerPlan's field order; the plan adds what was found.
    plan = partial(PowerPlan, base_rate, min_detectable_effect, effect, alpha, power, planned_contacts)
    ceiling = achieved(max_share)
    if ceiling < power:
        note = (
            f"underpowered: even a {max_share:.0%} holdout reaches power {ceiling:.2f} < {power} with "
            f"{planned_contacts} contacts"
        )
        return plan(required_holdout=None, holdout_share=max_share, achieved_power=ceiling, note=note)
    ratio = float(analysis.solve_power(effect, nobs1=planned_contacts, alpha=alpha, power=power, ratio=None))
    required = int(np.ceil(ratio * planned_contacts))
    share = min(max(required / (required + planned_contacts), min_share), max_share)
    note = f"{required} holdout customers for {planned_contacts} contacts detect -{min_detectable_effect:.3f}"
    if share == min_share and required / (required + planned_contacts) < min_share:
        note += f"; the floor {min_share:.0%} keeps more"
    return plan(required_holdout=required, holdout_share=share, achieved_power=achieved(share), note=note)
