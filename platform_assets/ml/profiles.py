"""Reference profiles: the distribution of each feature and of the score, frozen at training.

Monitoring compares a day with these bins and shares, so it never rereads training
data. Numeric columns keep decile bin edges, the share of rows in each bin and of
missing values, their mean and spread, and a fixed-size sample for the KS test;
categorical columns keep the share of each value.
"""

from __future__ import annotations

import numpy as np
import polars as pl

SAMPLE_SIZE = 5000
MISSING = "__missing__"


def numeric_profile(values: pl.Series, bins: int = 10, seed: int = 0) -> dict:
    present = values.drop_nulls().drop_nans() if values.dtype.is_float() else values.drop_nulls()
    # Sorted first: warehouse row order varies between queries, and the same data must give the same sample.
    array = np.sort(present.cast(pl.Float64).to_numpy())
    edges = np.unique(np.quantile(array, np.linspace(0, 1, bins + 1)[1:-1])) if len(array) else np.array([])
    rng = np.random.default_rng(seed)
    sample = rng.choice(array, size=min(SAMPLE_SIZE, len(array)), replace=False) if len(array) else array
    return {
        "kind": "numeric",
        "edges": edges.tolist(),
        "proportions": bin_proportions(array, edges).tolist(),
        "missing_share": 1.0 - len(array) / len(values) if len(values) else 0.0,
        "mean": float(array.mean()) if len(array) else None,
        "std": float(array.std()) if len(array) else None,
        "sample": np.sort(sample).tolist(),
        "rows": len(values),
    }


def categorical_profile(values: pl.Series) -> dict:
    return {"kind": "categorical", "shares": category_shares(values), "rows": len(values)}


def bin_proportions(values: np.ndarray, edges: np.ndarray | list[float]) -> np.ndarray:
    """Share of non-missing values in each bin: (-inf, e0], (e0, e1], ... (e_last, inf)."""
    edges = np.asarray(edges, dtype=np.float64)
    counts = np.bincount(np.searchsorted(edges, values, side="left"), minlength=len(edges) + 1)
    return counts / max(counts.sum(), 1)


def category_shares(values: pl.Series) -> dict[str, float]:
    counts = values.cast(pl.String).fill_null(MISSING).rename("value").value_counts(normalize=True, name="share")
    return dict(zip(counts["value"].to_list(), counts["share"].to_list(), strict=True))


def build_profile(frame: pl.DataFrame, features: list[str], scores: np.ndarray) -> dict:
    """Profiles of every feature (numeric or categorical by type) and of the scores."""
    profile = {
        name: categorical_profile(frame[name]) if frame[name].dtype == pl.String else numeric_profile(frame[name])
        for name in features
    }
    return {"features": profile, "score": numeric_profile(pl.Series("score", scores))}
