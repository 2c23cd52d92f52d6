"""Scoring a day: a probability for every row, exact SHAP reasons where someone will act or look.

Exact reasons (LightGBM's TreeSHAP, ``pred_contrib=True``) cost about 50 times a plain
prediction, so a day is scored in two passes over chunks of rows. The first runs
``predict`` on every row, which fixes each row's risk band, review flag and rank in the
day. The second runs ``pred_contrib`` on the selected rows only (high and medium risk,
the review band, the day's top share of scores, or every row when asked) and yields
Arrow record batches, which the lake writes as they come in one commit. The rest of the
day costs what plain prediction costs. Memory holds the day's features (read once), the
first pass's few columns, and one chunk at a time.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Literal

import dagster as dg
import numpy as np
import polars as pl
import pyarrow as pa
from pydantic import Field

from platform_assets.ml.bands import RiskBands
from platform_assets.tables import REASONS


class ScoringConfig(dg.Config):
    """Which rows ``churn_predictions`` explains; the risk bands are the scoring version's own (``RiskBands``)."""

    reasons: int = Field(default=3, description="How many top reasons to keep per prediction.")
    reasons_for: Literal["actionable", "all"] = Field(
        default="actionable",
        description=(
            "`actionable`: SHAP reasons for high and medium risk, the review band and the top share only "
            "(the others get a null `top_reasons`); `all`: for every row, at about 50 times the cost."
        ),
    )
    reasons_top_share: float = Field(
        default=0.0, ge=0.0, le=1.0, description="Share of the day's highest scores explained whatever their band."
    )
    chunk_rows: int = Field(default=100_000, gt=0, description="Rows scored and written per Arrow batch.")


def reason_order(contributions: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the positions of the k features that moved the score most (by absolute SHAP value), and
    their signed contributions; the rule both the batch and the online API explain with."""
    per_feature = contributions[:, :-1]
    k = min(k, per_feature.shape[1])
    order = np.argsort(-np.abs(per_feature), axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(per_feature, order, axis=1)


def top_reasons(contributions: np.ndarray, features: list[str], k: int) -> pl.Series:
    """The k features that moved each score most (by absolute SHAP value), with their signed push.

    Positive contributions raise the churn probability, negative ones lower it.
    """
    return reasons_series(*reason_order(contributions, k), features)


def reasons_series(order: np.ndarray, values: np.ndarray, features: list[str]) -> pl.Series:
    """Reasons given as ``reason_order`` gives them, as a column of lists of (feature, contribution)."""
    k = order.shape[1]
    names = np.asarray(features)[order]
    reasons = pl.DataFrame({f"f{i}": names[:, i] for i in range(k)} | {f"c{i}": values[:, i] for i in range(k)})
    return reasons.select(
        pl.concat_list(
            [pl.struct(pl.col(f"f{i}").alias("feature"), pl.col(f"c{i}").alias("contribution")) for i in range(k)]
        ).alias("top_reasons")
    ).to_series()


def top_share_floor(probability: np.ndarray, share: float) -> float:
    """The lowest probability among the day's top ``share`` of rows (ties included); inf for none."""
    count = math.ceil(share * probability.size)
    if count == 0:
        return math.inf
    return float(np.partition(probability, probability.size - count)[probability.size - count])


BANDS = ("low", "medium", "high")


def classify(probability: np.ndarray, config: ScoringConfig, bands: RiskBands) -> pl.DataFrame:
    """Band, review flag and why a row gets reasons (null: it does not), from the probabilities alone."""
    p = pl.col("churn_probability")
    why = (
        pl.when(pl.lit(config.reasons_for == "all"))
        .then(pl.lit("all"))
        .when(p >= bands.high_from)
        .then(pl.lit("high risk"))
        .when(p >= bands.medium_from)
        .then(pl.lit("medium risk"))
        .when(pl.col("needs_review"))
        .then(pl.lit("review"))
        .when(p >= top_share_floor(probability, config.reasons_top_share))
        .then(pl.lit("top share"))
    )
    band, review = bands.assign(probability)
    return pl.DataFrame(
        {"churn_probability": probability, "risk_band": pl.Series(BANDS).gather(band), "needs_review": review}
    ).with_columns(why.cast(pl.String).alias("explained_because"))


class DayScorer:
    """One day's rows scored by one model: pass one on construction, pass two per ``batches()``.

    ``bands`` are the version's recorded risk bands; ``keys`` are the columns copied from the
    features to the output (entity, snapshot); ``constants`` are literal columns appended to
    every row (model version, provenance).
    """

    def __init__(
        self,
        model,
        features: pl.DataFrame,
        config: ScoringConfig,
        bands: RiskBands,
        keys: list[str],
        constants: list[pl.Expr],
    ):
        self.model, self.features, self.config, self.bands = model, features, config, bands
        self.keys, self.constants = keys, constants
        probability = np.concatenate(
            [model.predict_frame(chunk) for chunk in features.iter_slices(config.chunk_rows)] or [np.empty(0)]
        )
        self.scores = classify(probability, config, bands)
        # TreeSHAP's base value is the model's, the same on every row: rows without reasons carry it too.
        self.expected_value = float(model.contributions(features.head(1))[0, -1]) if features.height else None
        self.highest = self.scores.head(0)

    @property
    def probability(self) -> np.ndarray:
        return self.scores["churn_probability"].to_numpy()

    def batches(self) -> pa.RecordBatchReader:
        """A fresh stream of the day's prediction rows as Arrow record batches, computed as it is read.

        Also keeps the ten highest scores with their reasons in ``highest`` as it goes.
        """
        schema = self._chunk(0, 0).to_arrow().schema
        highest = set(self.scores["churn_probability"].arg_sort(descending=True).head(10).to_list())
        self.highest = self._chunk(0, 0)

        def stream() -> Iterator[pa.RecordBatch]:
            for offset in range(0, self.features.height, self.config.chunk_rows):
                rows = self._chunk(offset, self.config.chunk_rows)
                top = pl.int_range(offset, offset + rows.height).is_in(list(highest))
                self.highest = pl.concat([self.highest, rows.filter(top)])
                yield from rows.to_arrow().cast(schema).to_batches()

        return pa.RecordBatchReader.from_batches(schema, stream())

    def _chunk(self, offset: int, length: int) -> pl.DataFrame:
        """Output rows ``offset..offset+length``: reasons from ``pred_contrib`` on the selected rows only."""
        scores = self.scores.slice(offset, length)
        features = self.features.slice(offset, length)
        selected = scores["explained_because"].is_not_null()
        reasons = pl.Series("top_reasons", [None] * scores.height, dtype=REASONS)
        if selected.any():
            contributions = self.model.contributions(features.filter(selected))
            explained = top_reasons(contributions, self.model.features, self.config.reasons).cast(REASONS)
            position = pl.select(pl.when(selected).then(selected.cum_sum() - 1)).to_series()
            reasons = explained.gather(position).alias("top_reasons")
        return features.select(self.keys).with_columns(
            scores["churn_probability"],
            scores["risk_band"],
            reasons,
            pl.lit(self.expected_value, dtype=pl.Float64).alias("expected_value"),
            scores["needs_review"],
            scores["explained_because"],
            *self.constants,
        )
