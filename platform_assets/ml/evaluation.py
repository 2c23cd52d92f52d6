"""How good a model is: discrimination, calibration, lift and fairness across segments."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score


def lift_at(y: np.ndarray, p: np.ndarray, share: float = 0.1) -> float:
    """Churn rate among the top ``share`` by score, over the overall churn rate."""
    top = np.argsort(-p, kind="stable")[: max(1, round(len(p) * share))]
    base = y.mean()
    return float(y[top].mean() / base) if base > 0 else float("nan")


def calibration_table(y: np.ndarray, p: np.ndarray, bins: int = 10) -> pl.DataFrame:
    """Predicted against observed churn by score decile (equal-count bins)."""
    order = np.argsort(p, kind="stable")
    groups = np.empty(len(p), dtype=np.int64)
    groups[order] = np.arange(len(p)) * bins // max(len(p), 1)
    return (
        pl.DataFrame({"bin": groups, "predicted": p, "observed": y.astype(np.float64)})
        .group_by("bin")
        .agg(pl.len().alias("rows"), pl.col("predicted").mean(), pl.col("observed").mean())
        .sort("bin")
    )


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    table = calibration_table(y, p, bins)
    weights = table["rows"] / table["rows"].sum()
    return float((weights * (table["predicted"] - table["observed"]).abs()).sum())


def metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    y = y.astype(np.int64)
    both = len(np.unique(y)) == 2
    return {
        "roc_auc": float(roc_auc_score(y, p)) if both else float("nan"),
        "pr_auc": float(average_precision_score(y, p)) if both else float("nan"),
        "log_loss": float(log_loss(y, p, labels=[0, 1])),
        "brier": float(brier_score_loss(y, p)),
        "lift_top_decile": lift_at(y, p, 0.1),
        "calibration_error": expected_calibration_error(y, p),
        "base_rate": float(y.mean()),
        "mean_prediction": float(p.mean()),
        "rows": float(len(y)),
    }


def segment_performance(
    frame: pl.DataFrame, label: str, score: str, segments: list[str], min_positives: int = 50
) -> pl.DataFrame:
    """ROC AUC per value of each segment column, where there are enough churners to measure it.

    With fewer than ``min_positives`` churners a segment's ROC AUC is mostly noise
    (its standard error is several points), and a gap between two such would
    refuse good models at random.
    """
    rows = []
    for column in segments:
        for (value,), group in frame.group_by(column):
            y = group[label].cast(pl.Int64).to_numpy()
            positives = int(y.sum())
            if positives < min_positives or positives == len(y):
                continue
            rows.append(
                {
                    "segment": column,
                    "value": str(value),
                    "rows": group.height,
                    "churn_rate": float(y.mean()),
                    "roc_auc": float(roc_auc_score(y, group[score].to_numpy())),
                }
            )
    schema = {
        "segment": pl.String,
        "value": pl.String,
        "rows": pl.Int64,
        "churn_rate": pl.Float64,
        "roc_auc": pl.Float64,
    }
    return pl.DataFrame(rows, schema=schema).sort(["segment", "value"])


def largest_gap(segments: pl.DataFrame, declared: Sequence[str]) -> dict[str, object]:
    """The widest ROC AUC gap between two values of one segment column.

    With no segment declared, or none with enough churners, the gap is not evaluated
    (``gap`` is None and ``reason`` says why), never a reassuring 0.
    """
    if segments.is_empty():
        reason = (
            f"no value of {', '.join(declared)} had enough churners and non-churners to measure"
            if declared
            else "no segment column declared (config.meta.role: segment in the dbt YAML)"
        )
        return {"gap": None, "segment": None, "best": None, "worst": None, "reason": reason}
    spread = (
        segments.group_by("segment")
        .agg(
            (pl.col("roc_auc").max() - pl.col("roc_auc").min()).alias("gap"),
            pl.col("value").sort_by("roc_auc").last().alias("best"),
            pl.col("value").sort_by("roc_auc").first().alias("worst"),
        )
        .sort("gap", descending=True)
        .row(0, named=True)
    )
    return {**spread, "reason": None}
