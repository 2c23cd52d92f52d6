"""One model version ready to answer: its booster, its encoding, and how its scores become an answer.

Scores go through the batch's own rules: the version's recorded ``RiskBands`` (read from
its reference profile, as ``churn_predictions`` reads them) band the probabilities and flag
the review band, and ``reason_order`` picks the SHAP reasons; so a customer gets the same
band and reasons online as in the day's predictions. Both are plain numpy: a polars frame per
request would cost more (about 1 ms here) than the prediction itself. Single rows run LightGBM with one thread:
with its default threads a one-row call pays OpenMP's start-up (p95 8 ms instead of
0.1 ms here).

Scoring is split in two steps so the precomputed answers (``answers.py``) and live scoring
share them: ``arrays`` (the model's work: probability, band, review flag, reason positions and
contributions, all numpy) and ``Scores.of`` (those arrays as an answer). A precomputed answer
is ``Scores.of`` over the same arrays computed in a batch, so it equals the live one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl

from platform_assets.ml.bands import UNRECORDED, RiskBands, bands_of
from platform_assets.ml.scoring import BANDS, reason_order
from platform_assets.serving.inputs import Bounds, declared_bounds

SINGLE_THREAD_ROWS = 64  # fewer rows score on one thread (OpenMP's start-up costs more than it saves)


@dataclass(frozen=True)
class ScoreArrays:
    """A version's scores of some rows as numpy arrays: what is precomputed, and what an answer is made of."""

    probability: np.ndarray  # float64
    band: np.ndarray  # uint8: 0 low, 1 medium, 2 high
    review: np.ndarray  # bool
    order: np.ndarray | None = None  # (rows, reasons) feature positions, by absolute contribution
    contribution: np.ndarray | None = None  # (rows, reasons) their signed SHAP contributions

    def take(self, rows: np.ndarray) -> ScoreArrays:
        def at(values):
            return None if values is None else values[rows]

        return ScoreArrays(at(self.probability), at(self.band), at(self.review), at(self.order), at(self.contribution))


@dataclass(frozen=True)
class Scores:
    """Scores of some rows by one version, as plain lists ready for JSON and the audit."""

    probability: list[float]
    risk_band: list[str]
    needs_review: list[bool]
    reasons: list[list[dict]] | None

    @classmethod
    def of(cls, arrays: ScoreArrays, names: list[str]) -> Scores:
        explained = None
        if arrays.order is not None:
            explained = [
                [{"feature": names[j], "contribution": v} for j, v in zip(row, pushes, strict=True)]
                for row, pushes in zip(arrays.order.tolist(), arrays.contribution.tolist(), strict=True)
            ]
        return cls(
            probability=arrays.probability.tolist(),
            risk_band=[BANDS[b] for b in arrays.band.tolist()],
            needs_review=arrays.review.tolist(),
            reasons=explained,
        )


@dataclass(frozen=True)
class ServedModel:
    """A registered version in memory, with the what-if bounds and risk bands of its profile."""

    name: str
    version: str
    run_id: str
    model: object = field(repr=False)  # platform_assets.ml.pyfunc_model.ChurnModel, the version's own code
    bounds: dict[str, Bounds] = field(default_factory=dict, repr=False)  # what-if ranges, from the profile
    bands: RiskBands = field(default=UNRECORDED, repr=False)  # the version's risk bands, from the profile too

    @classmethod
    def of(cls, name: str, version: str, run_id: str, model, profile: dict) -> ServedModel:
        return cls(name, version, run_id, model, declared_bounds(profile), bands_of(profile))

    @classmethod
    def load(cls, registry, version, model=None) -> ServedModel:
        """A registered version (``RegisteredVersion``) from the registry: its model (unless already loaded) and
        the bounds and bands of its reference profile."""
        model = model or registry.load(version.version)
        profile = registry.reference_profile(version.run_id)
        return cls.of(registry.model_name, version.version, version.run_id, model, profile)

    @property
    def features(self) -> list[str]:
        return self.model.features

    def encode(self, frame: pl.DataFrame) -> np.ndarray:
        """Feature values encoded exactly as training and the batch encode them."""
        return self.model.matrix(frame)

    def arrays(self, matrix: np.ndarray, reasons: int) -> ScoreArrays:
        threads = 1 if matrix.shape[0] < SINGLE_THREAD_ROWS else 0  # 0: LightGBM's default, for batches
        booster = self.model.booster
        order = contribution = None
        if reasons:
            contributions = booster.predict(matrix, pred_contrib=True, num_threads=threads)
            # TreeSHAP adds up to the raw score: the probability is its logistic, as predict returns it.
            probability = 1.0 / (1.0 + np.exp(-contributions.sum(axis=1)))
            order, contribution = reason_order(contributions, reasons)
        else:
            probability = booster.predict(matrix, num_threads=threads)
        band, review = self.bands.assign(probability)
        return ScoreArrays(probability, band.astype(np.uint8), review, order, contribution)

    def score(self, matrix: np.ndarray, reasons: int) -> Scores:
        return Scores.of(self.arrays(matrix, reasons), self.features)
