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
    frame: pl.DataFrame, label: str, score: str, segments: list[str], *, min_per_class: int
) -> pl.DataFrame:
    """ROC AUC per value of each segment column, where there are enough churners and non-churners to measure it.

    A value with fewer than ``min_per_class`` churners, or fewer than that many
    non-churners (``PLATFORM_FAIRNESS_MIN_PER_CLASS``), is left out: its ROC AUC is
    mostly noise (the standard error is several points), and a gap between two such
    would refuse good models at random.
    """
    rows = []
    for column in segments:
        for (value,), group in frame.group_by(column):
            y = group[label].cast(pl.Int64).to_numpy()
            positives = int(y.sum())
            if min(positives, len(y) - positives) < min_per_class:
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


def largest_gap(segments: pl.DataFrame, declared: Sequence[str], min_per_class: int) -> dict[str, object]:
    """The widest ROC AUC gap between two values of one segment column.

    With no segment declared, or fewer than two measured values in every declared column
    (``segment_performance`` with the same ``min_per_class``), the gap is not evaluated
    (``gap`` is None and ``reason`` says why), never a reassuring 0.
    """
    measured = segments.group_by("segment").agg(pl.len().alias("values")).filter(pl.col("values") >= 2)
    if measured.is_empty():
        columns = declared[0] if len(declared) == 1 else f"any of {', '.join(declared)}"
        reason = (
            f"no two values of {columns} had at least {min_per_class} churners and "
            f"{min_per_class} non-churners each to compare (PLATFORM_FAIRNESS_MIN_PER_CLASS)"
            if declared
            else "no segment column declared (config.meta.role: segment in the dbt YAML)"
        )
        return {"gap": None, "segment": None, "best": None, "worst": None, "reason": reason}
    spread = (
        segments.join(measured.select("segment"), on="segment")
        .group_by("segment")
        .agg(
            (pl.col("roc_auc").max() - pl.col("roc_auc").min()).alias("gap"),
            pl.col("value").sort_by("roc_auc").last().alias("best"),
            pl.col("value").sort_by("roc_auc").first().alias("worst"),
        )
        .sort("gap", descending=True)
        .row(0, named=True)
    )
    return {**spread, "reason": None}


def judge_fairness(gap: dict, bound: float) -> tuple[bool, str]:
    """Whether the segment gap is within the bound, and a check's text; an unmeasured gap never passes."""
    if gap["gap"] is None:
        return False, f"not evaluated: {gap['reason']}"
    text = (
        f"largest ROC AUC gap {gap['gap']:.3f} across {gap['segment']} "
        f"(best {gap['best']}, worst {gap['worst']}; bound {bound})"
    )
    return gap["gap"] <= bound, text
