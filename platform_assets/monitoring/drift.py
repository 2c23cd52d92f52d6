"""Drift statistics of one day against a reference profile frozen at training.

PSI is the headline figure (bins: the reference deciles; a missing-value bin; empty
bins floored at ``EPSILON`` so the logarithm stays finite). PSI on deciles misses a
shift of a third of a standard deviation, and saturates near 0.16 when session time
falls 30%, so numeric features also get an effect size, the Wasserstein distance over
the reference standard deviation, and categorical ones the Jensen-Shannon distance;
either figure can raise a WARN or an ERROR. KS and chi-square p-values are reported
for information only: at tens of thousands of rows they flag shifts too small to
matter.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import dagster as dg
import numpy as np
import polars as pl
from pydantic import Field

from platform_assets.ml.profiles import MISSING, bin_proportions, category_shares

EPSILON = 1e-4  # floor for an empty bin's share in PSI
IN_REFERENCE = "in reference"  # the level of a figure on a day that is part of the reference


def reference_overlap(reference: dict, day: date) -> str | None:
    """Why ``day`` cannot be compared with the reference, when it is part of it; None when it is not.

    A day whose rows the reference profiles (a training day, or the one snapshot of a
    dataset split by a column) would be compared with itself: its figures are near zero
    whatever happens, so a check on them would pass because it compared nothing. A
    profile logged before references were recorded says nothing, and is compared.
    """
    recorded = reference.get("reference")
    if not recorded or day.isoformat() not in recorded["snapshots"]:
        return None
    return (
        f"this day is part of the reference ({recorded['kind']} rows): not a drift comparison "
        f"(the reference is {recorded['description']})"
    )


def served_outside_reference(
    reference: dict, served: pl.DataFrame, snapshot: str = "feature_snapshot_date"
) -> tuple[pl.DataFrame, str | None]:
    """The served rows to compare with the reference, and why the others are not (None when every row is).

    Online, the features served are the online store's rows, of their own snapshot day,
    not of the request day: a row read from a snapshot day the reference profiles is one
    of the reference's own rows, and comparing it with the reference compares the
    reference with itself, as ``reference_overlap`` says of a batch day. Rows with features given in the request (no snapshot day) are
    compared. A profile logged before references were recorded says nothing.
    """
    recorded = reference.get("reference")
    if not recorded or served.is_empty():
        return served, None
    days = [date.fromisoformat(d) for d in recorded["snapshots"]]
    own = pl.col(snapshot).is_in(days).fill_null(False)
    kept = served.filter(~own)
    if kept.height == served.height:
        return served, None
    shown = served.filter(own)[snapshot].unique().sort().to_list()
    listed = ", ".join(map(str, shown[:3])) + (f" and {len(shown) - 3} more" if len(shown) > 3 else "")
    return kept, (
        f"{served.height - kept.height} of {served.height} served rows are part of the reference "
        f"({recorded['kind']} rows): their features are of snapshot {listed} (the reference is "
        f"{recorded['description']})"
    )


def psi(reference: np.ndarray, current: np.ndarray) -> float:
    """Population stability index of two share vectors over the same bins."""
    ref = np.maximum(np.asarray(reference, dtype=np.float64), EPSILON)
    cur = np.maximum(np.asarray(current, dtype=np.float64), EPSILON)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def _present(values: pl.Series) -> np.ndarray:
    series = values.cast(pl.Float64)
    return series.drop_nulls().drop_nans().to_numpy()


def numeric_drift(profile: dict, values: pl.Series) -> dict[str, float]:
    from scipy.stats import ks_2samp, wasserstein_distance  # scipy loads with the first report, not the definitions

    present = _present(values)
    missing = 1.0 - len(present) / len(values) if len(values) else 0.0
    reference = np.append(np.asarray(profile["proportions"]) * (1 - profile["missing_share"]), profile["missing_share"])
    current = np.append(bin_proportions(present, profile["edges"]) * (1 - missing), missing)
    sample = np.asarray(profile["sample"], dtype=np.float64)
    if len(present) and len(sample):
        ks = ks_2samp(sample, present, method="asymp")
        effect = wasserstein_distance(sample, present) / (profile["std"] or 1.0)
        ks_statistic, ks_pvalue = float(ks.statistic), float(ks.pvalue)
    else:
        ks_statistic, ks_pvalue, effect = float("nan"), float("nan"), 0.0
    return {
        "psi": psi(reference, current),
        "effect_size": float(effect),
        "ks_statistic": ks_statistic,
        "p_value": ks_pvalue,
        "reference_mean": profile["mean"],
        "current_mean": float(present.mean()) if len(present) else float("nan"),
    }


def categorical_drift(profile: dict, values: pl.Series) -> dict[str, float]:
    from scipy.spatial.distance import jensenshannon
    from scipy.stats import chisquare

    reference_shares = profile["shares"]
    current_shares = category_shares(values)
    categories = sorted(set(reference_shares) | set(current_shares))
    reference = np.array([reference_shares.get(c, 0.0) for c in categories])
    current = np.array([current_shares.get(c, 0.0) for c in categories])
    counts = current * len(values)
    expected = np.maximum(reference, EPSILON)
    expected = expected / expected.sum() * counts.sum()
    new = [c for c in categories if c not in reference_shares and c != MISSING]
    return {
        "psi": psi(reference, current),
        "effect_size": float(jensenshannon(reference, current, base=2)),
        "ks_statistic": float("nan"),
        "p_value": float(chisquare(counts, expected).pvalue) if counts.sum() else float("nan"),
        "reference_mean": float("nan"),
        "current_mean": float("nan"),
        "new_categories": ", ".join(new),
    }


def feature_drift(reference: dict, frame: pl.DataFrame, features: list[str]) -> pl.DataFrame:
    """One row per feature: PSI, effect size, KS statistic, p-value, means, new categories."""
    rows = []
    for name in features:
        profile = reference["features"].get(name)
        if profile is None:  # a feature added after this model was trained: nothing to compare with
            continue
        stats = (categorical_drift if profile["kind"] == "categorical" else numeric_drift)(profile, frame[name])
        rows.append({"feature": name, "kind": profile["kind"], "new_categories": "", **stats})
    return pl.DataFrame(rows, schema=DRIFT_SCHEMA)


DRIFT_SCHEMA = {
    "feature": pl.String,
    "kind": pl.String,
    "psi": pl.Float64,
    "effect_size": pl.Float64,
    "ks_statistic": pl.Float64,
    "p_value": pl.Float64,
    "reference_mean": pl.Float64,
    "current_mean": pl.Float64,
    "new_categories": pl.String,
}


def level_check(name: str, level: str, description: str, metadata: dict) -> dg.AssetCheckResult:
    """A drift check's result from its level: passes only on ``ok``, ERROR on ``error``, else WARN (a
    warning, or a day of the reference); the description cut to what the UI shows."""
    return dg.AssetCheckResult(
        check_name=name,
        passed=level == "ok",
        severity=dg.AssetCheckSeverity.ERROR if level == "error" else dg.AssetCheckSeverity.WARN,
        description=description[:2000],
        metadata=metadata,
    )


class Thresholds(dg.Config):
    """When drift warns and when it fails: run config of the drift reports, and the judge's rules."""

    psi_warn: float = Field(default=0.1, description="PSI above which a feature or the score counts as drifted (WARN).")
    psi_error: float = Field(default=0.25, description="PSI above which the check fails with ERROR.")
    effect_warn: float = Field(
        default=0.15,
        description="Effect size (Wasserstein distance over the reference std, or Jensen-Shannon distance) above "
        "which a feature counts as drifted even when its PSI is low.",
    )
    effect_error: float = Field(default=0.25, description="Effect size above which the check fails with ERROR.")
    max_drifted_share: float = Field(default=0.3, description="ERROR when more than this share of features drift.")

    def level(self, psi: pl.Expr, effect: pl.Expr) -> pl.Expr:
        """'error' past an error bound (PSI or effect size), 'warn' past a warning bound, else 'ok'."""
        return (
            pl.when((psi > self.psi_error) | (effect > self.effect_error))
            .then(pl.lit("error"))
            .when((psi > self.psi_warn) | (effect > self.effect_warn))
            .then(pl.lit("warn"))
            .otherwise(pl.lit("ok"))
        )


@dataclass(frozen=True)
class FeatureVerdict:
    report: pl.DataFrame  # one row per feature, with its level
    severity: str  # "ok", "warn" or "error"
    reasons: tuple[str, ...]

    @property
    def drifted(self) -> pl.DataFrame:
        return self.report.filter(pl.col("level") != "ok")

    @property
    def share(self) -> float:
        return self.drifted.height / max(self.report.height, 1)


def judge_features(report: pl.DataFrame, thresholds: Thresholds) -> FeatureVerdict:
    """ERROR when a feature's PSI passes the error bound or too many features drift; WARN on any drift."""
    report = report.with_columns(level=thresholds.level(pl.col("psi"), pl.col("effect_size")))
    drifted = report.filter(pl.col("level") != "ok")
    share = drifted.height / max(report.height, 1)
    errors = [
        f"{r['feature']} PSI {r['psi']:.3f} (error above {thresholds.psi_error}), effect size {r['effect_size']:.3f} "
        f"(error above {thresholds.effect_error})"
        for r in report.filter(pl.col("level") == "error").iter_rows(named=True)
    ]
    if share > thresholds.max_drifted_share:
        errors.append(
            f"{drifted.height}/{report.height} features drifted ({share:.0%} > {thresholds.max_drifted_share:.0%})"
        )
    if errors:
        return FeatureVerdict(report, "error", tuple(errors))
    warned = tuple(
        f"{r['feature']} drifted (PSI {r['psi']:.3f}, effect {r['effect_size']:.3f})"
        for r in drifted.iter_rows(named=True)
    )
    return FeatureVerdict(report, "warn" if warned else "ok", warned or ("no feature drifted",))
