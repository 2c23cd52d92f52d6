"""Risk bands: where a probability becomes medium or high risk, and the uncertain band sent to review.

Fixed probability cuts mean nothing across datasets: where 82% of rows are positive, a
cut at 0.3 calls nearly everyone high risk, and every high-risk row gets reasons. So
by default the bands come from the model's own validated score distribution: the top
5% of its validation scores are high, the next 15% medium, and the 4% of validation
scores around the high cut are flagged for review. A dataset may declare other shares,
or fixed cuts, in dbt (``meta.churn_platform.risk_bands``). The cuts are computed once,
at training, and stored with the version (in its reference profile, key ``bands``), so
the day's batch scoring and the online API band a probability alike, and the share of
rows that get reasons follows from the bands.

The cuts are probabilities; a day whose scores shift moves rows between bands, as it
should: the bands rank against what the model validated, not against the day.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np

SHARES = {"high_share": 0.05, "medium_share": 0.15, "review_share": 0.04}
CUTS = ("medium_from", "high_from", "review_from", "review_to")
REVIEW_HALF_WIDTH = 0.05  # fixed cuts without a declared review band: high_from ± this


@dataclass(frozen=True)
class RiskBands:
    """The cuts of one model version; ``rule`` says in words how they were set."""

    medium_from: float
    high_from: float
    review_from: float
    review_to: float
    rule: str

    def assign(self, probability: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Band of each probability (0 low, 1 medium, 2 high) and review flag: plain numpy, cheap on one row
        (the online API) as on a day."""
        band = np.select([probability >= self.high_from, probability >= self.medium_from], [2, 1], 0)
        return band, (probability >= self.review_from) & (probability < self.review_to)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, state: Mapping) -> RiskBands:
        return cls(**{name: state[name] for name in (*CUTS, "rule")})


# Versions trained before bands were recorded banded with these cuts; they keep them.
UNRECORDED = RiskBands(0.1, 0.3, 0.25, 0.35, "fixed cuts 0.1 and 0.3: the version recorded no bands")


def bands_of(profile: Mapping) -> RiskBands:
    """The bands a version recorded in its reference profile (``UNRECORDED`` for an older version)."""
    return RiskBands.from_dict(profile["bands"]) if "bands" in profile else UNRECORDED


def declared_rule(declared: Mapping | None, where: str) -> tuple[tuple[str, float], ...]:
    """A dataset's ``risk_bands`` declaration, checked, as sorted (key, value) pairs (hashable).

    Either shares of the validation scores (``high_share``, ``medium_share``, ``review_share``;
    missing ones take the defaults) or fixed cuts (``medium_from``, ``high_from``, optionally
    ``review_from`` and ``review_to``); none declared means the default shares.
    """
    declared = dict(declared or {})
    unknown = set(declared) - set(SHARES) - set(CUTS)
    if unknown:
        raise ValueError(f"{where}: unknown risk_bands keys {sorted(unknown)}; use {list(SHARES)} or {list(CUTS)}")
    if set(declared) & set(SHARES) and set(declared) & set(CUTS):
        raise ValueError(f"{where}: risk_bands mixes shares {list(SHARES)} with fixed cuts {list(CUTS)}; use one")
    try:
        values = {key: float(value) for key, value in declared.items()}
    except (TypeError, ValueError):
        raise ValueError(f"{where}: risk_bands values must be numbers, got {declared}") from None
    if set(values) & set(CUTS):
        if not {"medium_from", "high_from"} <= set(values):
            raise ValueError(f"{where}: fixed risk_bands need both medium_from and high_from, got {declared}")
        high = values["high_from"]
        values.setdefault("review_from", max(high - REVIEW_HALF_WIDTH, 0.0))
        values.setdefault("review_to", min(high + REVIEW_HALF_WIDTH, 1.0))
        if not 0 <= values["medium_from"] <= high <= 1 or not 0 <= values["review_from"] <= values["review_to"] <= 1:
            raise ValueError(
                f"{where}: fixed risk_bands need 0 <= medium_from <= high_from <= 1 and "
                f"0 <= review_from <= review_to <= 1, got {values}"
            )
    else:
        values = SHARES | values
        high, medium, review = values["high_share"], values["medium_share"], values["review_share"]
        if not (high > 0 and medium >= 0 and high + medium <= 1 and 0 <= review < 2 * high):
            raise ValueError(
                f"{where}: risk_bands shares need 0 < high_share, 0 <= medium_share, high_share + medium_share <= 1 "
                f"and 0 <= review_share < 2 * high_share, got {values}"
            )
    return tuple(sorted(values.items()))


def fit_bands(validation_scores: np.ndarray, rule: tuple[tuple[str, float], ...] = ()) -> RiskBands:
    """The cuts of a declared rule (``declared_rule``), from the model's validation scores when it gives shares."""
    values = dict(rule or declared_rule(None, "default"))
    if "high_from" in values:
        return RiskBands(
            values["medium_from"],
            values["high_from"],
            values["review_from"],
            values["review_to"],
            f"declared in dbt: medium from {values['medium_from']:g}, high from {values['high_from']:g}, "
            f"review {values['review_from']:g} to {values['review_to']:g}",
        )
    scores = np.asarray(validation_scores, dtype=np.float64)
    if not scores.size:
        raise ValueError("risk bands from shares need validation scores, and there are none")
    high, medium, review = values["high_share"], values["medium_share"], values["review_share"]
    distinct = np.unique(scores)

    def top(share: float) -> float:
        """A cut that puts the top ``share`` of the validation scores above it (ties included), halfway to
        the next lower score, so that no validation score sits on it: the batch's ``predict`` and the
        API's SHAP sum, equal to about 1e-15, band a score alike."""
        at = int(np.searchsorted(distinct, np.quantile(scores, 1.0 - share), side="left"))
        return float((distinct[at] + distinct[at - 1]) / 2) if at else float(distinct[0])

    cuts = {
        "medium_from": top(high + medium),
        "high_from": top(high),
        "review_from": top(high + review / 2),
        "review_to": top(high - review / 2),
    }
    rule = (
        f"from the validation scores ({scores.size} rows): top {_percent(high)} high (from {cuts['high_from']:.4f}), "
        f"next {_percent(medium)} medium (from {cuts['medium_from']:.4f}); review: the {_percent(review)} around the high cut "
        f"({cuts['review_from']:.4f} to {cuts['review_to']:.4f})"
    )
    return RiskBands(**cuts, rule=rule)


def _percent(share: float) -> str:
    return f"{share * 100:g}%"
