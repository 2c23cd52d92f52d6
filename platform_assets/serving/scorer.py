"""One model version ready to answer: its booster, its encoding, and the online store encoded for it.

Scores go through the batch's own rules: the version's recorded ``RiskBands`` (read from
its reference profile, as ``churn_predictions`` reads them) band the probabilities and flag
the review band, and ``reason_order`` picks the SHAP reasons; so a customer gets the same
band and reasons online as in the day's predictions. Both are plain numpy: a polars frame per
request would cost more (about 1 ms here) than the prediction itself. Single rows run LightGBM with one thread:
with its default threads a one-row call pays OpenMP's start-up (p95 8 ms instead of
0.1 ms here).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl

from platform_assets.ml.bands import UNRECORDED, RiskBands, bands_of
from platform_assets.ml.scoring import BANDS, reason_order
from platform_assets.serving.inputs import Bounds, declared_bounds
from platform_assets.serving.store import FeatureSnapshot


@dataclass(frozen=True)
class Scores:
    """Scores of some rows by one version, as plain lists ready for JSON and the audit."""

    probability: list[float]
    risk_band: list[str]
    needs_review: list[bool]
    reasons: list[list[dict]] | None


@dataclass(frozen=True)
class ServedModel:
    """A registered version in memory; ``matrix`` is the online snapshot encoded for this version."""

    name: str
    version: str
    run_id: str
    model: object = field(repr=False)  # platform_assets.ml.pyfunc_model.ChurnModel, the version's own code
    matrix: np.ndarray = field(repr=False)
    snapshot_version: int = -1
    bounds: dict[str, Bounds] = field(default_factory=dict, repr=False)  # what-if ranges, from the profile
    bands: RiskBands = field(default=UNRECORDED, repr=False)  # the version's risk bands, from the profile too

    @classmethod
    def of(cls, name: str, version: str, run_id: str, model, snapshot: FeatureSnapshot, profile: dict) -> ServedModel:
        matrix = model.matrix(snapshot.frame)
        return cls(name, version, run_id, model, matrix, snapshot.version, declared_bounds(profile), bands_of(profile))

    @property
    def features(self) -> list[str]:
        return self.model.features

    def encode(self, frame: pl.DataFrame) -> np.ndarray:
        """What-if values encoded exactly as training and the store encode them."""
        return self.model.matrix(frame)

    def score(self, matrix: np.ndarray, reasons: int) -> Scores:
        threads = 1 if matrix.shape[0] < 64 else 0  # 0: LightGBM's default, for batches
        booster = self.model.booster
        if reasons:
            contributions = booster.predict(matrix, pred_contrib=True, num_threads=threads)
            # TreeSHAP adds up to the raw score: the probability is its logistic, as predict returns it.
            probability = 1.0 / (1.0 + np.exp(-contributions.sum(axis=1)))
            order, values = reason_order(contributions, reasons)
            names = self.features
            explained = [
                [{"feature": names[j], "contribution": v} for j, v in zip(row, pushes, strict=True)]
                for row, pushes in zip(order.tolist(), values.tolist(), strict=True)
            ]
        else:
            probability, explained = booster.predict(matrix, num_threads=threads), None
        band, review = self.bands.assign(probability)
        return Scores(
            probability=probability.tolist(),
            risk_band=[BANDS[b] for b in band.tolist()],
            needs_review=review.tolist(),
            reasons=explained,
        )
