"""Reference profiles: the distribution of each feature and of the score, frozen at training.

The reference is what the model learned from: its training rows (or, when the dataset
declares ``drift_reference: validation``, its validation rows), recorded in the profile
(``reference``: which rows, how many, which snapshot days), so a report knows when the
day it judges is part of the reference and would compare a day with itself.
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


def sample_entities(frame: pl.DataFrame, entity: str, max_rows: int) -> pl.DataFrame:
    """The frame, or past ``max_rows`` a fixed share of its entities (by a hash of the key) with all their rows.

    Bin edges and proportions of a few hundred thousand rows are as good as of ten
    million, at a fraction of the memory and scoring; the same data gives the same sample.
    """
    if frame.height <= max_rows:
        return frame
    return frame.filter(pl.col(entity).hash(seed=29) % frame.height < max_rows)


def reference_rows(frame: pl.DataFrame, split, spec, kind: str, max_rows: int) -> tuple[pl.DataFrame, dict]:
    """The rows drift is measured against (``kind``: the ``training`` or ``validation`` side of the split,
    sampled past ``max_rows``) and the record of which they are, for the profile's ``reference``."""
    side = frame.filter(split.is_train(spec) if kind == "training" else split.is_validation(spec))
    rows = sample_entities(side, spec.entity, max_rows)
    days = rows[spec.snapshot].cast(pl.Date).unique().sort().to_list()  # days, as partitions are
    shown = ", ".join(map(str, days)) if len(days) <= 3 else f"{days[0]}..{days[-1]} ({len(days)} snapshot days)"
    value = "train" if kind == "training" else "validation"
    where = f"split {split.column} = {value}" if split.kind == "column" else f"the time split's {kind} days"
    sampled = f", a sample of whole {spec.entity}s from {side.height}" if rows.height < side.height else ""
    return rows, {
        "kind": kind,
        "rows": rows.height,
        "snapshots": [str(d) for d in days],
        "description": f"the {kind} rows ({where}): {rows.height} rows of {shown}{sampled}",
    }
