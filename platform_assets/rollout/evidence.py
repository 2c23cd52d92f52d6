"""The statistics behind the rollout's verdicts: bounds and tests that noise cannot fool.

Every verdict here says how sure it is, and acts only on evidence past its level:

- an error rate is over budget only when its one-sided Clopper-Pearson bound says so
  and it is significantly above the champion's (both: an intersection-union test);
- a latency p95 is over the SLA only when the distribution-free quantile test says so
  (``scipy.stats.quantile_test``), one value per request and model;
- ROC AUCs are compared on the same customers (paired), each counted once, with
  DeLong's test for correlated AUCs;
- repeated daily looks spend alpha: a promotion on quality follows an O'Brien-Fleming-
  type spending function over ``max_looks`` (each look at its increment, a union
  bound); rollbacks, operational or quality, are Bonferroni over the same looks.

DeLong's test is written here: neither scipy, statsmodels nor scikit-learn has it, and
the fast algorithm (Sun and Xu, 2014) is a few lines over ``scipy.stats.rankdata``.
A test checks it against a paired bootstrap over customers (``scipy.stats.bootstrap``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl

# scipy.stats and statsmodels are imported where they are used: this module is part of the
# definitions every process loads (each CLI command, run worker and code server), and scipy.stats
# alone costs over a second there, while only a rollout verdict needs it.


@dataclass(frozen=True)
class ErrorEvidence:
    requests: int
    errors: int
    rate: float
    low: float  # one-sided lower bound at the look's level
    high: float  # one-sided upper bound
    p_above_champion: float  # one-sided: the challenger errs more than the champion

    def over(self, budget: float, level: float) -> bool:
        return self.low > budget and self.p_above_champion < level

    def within(self, budget: float) -> bool:
        return self.high <= budget


def error_evidence(errors: int, requests: int, champion_errors: int, champion_requests: int, level: float):
    """Clopper-Pearson bounds of the challenger's error rate and its one-sided test against the champion's."""
    from statsmodels.stats.proportion import proportion_confint, test_proportions_2indep

    if requests == 0:
        return None
    low, high = proportion_confint(errors, requests, alpha=2 * level, method="beta")  # each side one-sided
    if champion_requests and (errors or champion_errors):
        with np.errstate(divide="ignore", invalid="ignore"):  # statsmodels' ratio of a zero rate, unused here
            test = test_proportions_2indep(
                errors, requests, champion_errors, champion_requests, compare="diff", alternative="larger"
            )
        p = float(test.pvalue)
    else:
        p = 1.0
    return ErrorEvidence(requests, errors, errors / requests, float(low), float(high), p)


@dataclass(frozen=True)
class LatencyEvidence:
    latency_ms: np.ndarray = field(repr=False)
    sla_ms: float
    p95: float
    p_over_sla: float  # one-sided: the p95 is above the SLA
    p_within_sla: float  # one-sided: the p95 is below the SLA

    @property
    def requests(self) -> int:
        return self.latency_ms.size

    def bound(self, side: str, level: float) -> float:
        """The one-sided bound of the p95 (``low`` or ``high``) at ``level``, for the report."""
        from scipy import stats

        alternative = "greater" if side == "low" else "less"
        test = stats.quantile_test(self.latency_ms, q=self.sla_ms, p=0.95, alternative=alternative)
        return float(getattr(test.confidence_interval(confidence_level=1 - level), side))


def latency_evidence(latency_ms: np.ndarray, sla_ms: float) -> LatencyEvidence | None:
    """Whether the 95th percentile passes the SLA, distribution-free (order statistics, ``quantile_test``)."""
    from scipy import stats

    if latency_ms.size == 0:
        return None
    over = stats.quantile_test(latency_ms, q=sla_ms, p=0.95, alternative="greater").pvalue
    within = stats.quantile_test(latency_ms, q=sla_ms, p=0.95, alternative="less").pvalue
    return LatencyEvidence(latency_ms, sla_ms, float(np.quantile(latency_ms, 0.95)), float(over), float(within))


def _structural(y: np.ndarray, score: np.ndarray):
    """ROC AUC and DeLong's structural components of one score (Sun and Xu's algorithm)."""
    from scipy import stats

    positives, negatives = score[y], score[~y]
    m, n = positives.size, negatives.size
    ranks = stats.rankdata(np.concatenate([positives, negatives]))
    within_pos, within_neg = stats.rankdata(positives), stats.rankdata(negatives)
    auc = (ranks[:m].sum() - m * (m + 1) / 2) / (m * n)
    v10 = (ranks[:m] - within_pos) / n  # per positive: share of negatives it outranks
    v01 = 1 - (ranks[m:] - within_neg) / m  # per negative: share of positives that outrank it
    return auc, v10, v01


@dataclass(frozen=True)
class PairedAuc:
    customers: int
    churned: int
    champion_auc: float
    challenger_auc: float
    difference: float  # challenger - champion
    standard_error: float

    def p_better(self) -> float:
        """One-sided p of "the challenger's AUC is higher"."""
        from scipy import stats

        return float(stats.norm.sf(self.difference / self.standard_error)) if self.standard_error > 0 else 1.0

    def p_worse(self, tolerance: float) -> float:
        """One-sided p of "the challenger's AUC is lower by more than ``tolerance``"."""
        from scipy import stats

        if self.standard_error <= 0:
            return 1.0
        return float(stats.norm.cdf((self.difference + tolerance) / self.standard_error))

    def interval(self, level: float) -> tuple[float, float]:
        """Two one-sided bounds of the difference, each at ``level``."""
        from scipy import stats

        half = stats.norm.ppf(1 - level) * self.standard_error if level > 0 else np.inf
        return self.difference - half, self.difference + half


def delong(churned: np.ndarray, champion: np.ndarray, challenger: np.ndarray) -> PairedAuc:
    """DeLong's test for two correlated ROC AUCs: the two models' scores of the same customers."""
    y = churned.astype(bool)
    (a, a10, a01), (b, b10, b01) = _structural(y, champion), _structural(y, challenger)
    m, n = int(y.sum()), int((~y).sum())
    s10, s01 = np.cov(np.vstack([a10, b10])), np.cov(np.vstack([a01, b01]))
    cov = s10 / m + s01 / n
    variance = cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]
    return PairedAuc(m + n, m, float(a), float(b), float(b - a), float(np.sqrt(max(variance, 0.0))))


def paired_customers(champion: pl.DataFrame, challenger: pl.DataFrame) -> pl.DataFrame:
    """One row per customer: both models' scores of the same request, where the outcome matured.

    Rows pair on request and customer (shadow and the champion's silent scores of canary
    customers score the very same requests); each customer counts once, by the first
    request that paired, so a customer asking twenty times is one customer.
    """
    keys = ["request_id", "customer_id"]

    def ok(rows: pl.DataFrame, name: str) -> pl.DataFrame:
        return rows.filter((pl.col("status") == "ok") & pl.col("customer_id").is_not_null()).select(
            *keys, "requested_at", "churned", pl.col("churn_probability").alias(name)
        )

    pairs = ok(champion, "champion").join(ok(challenger, "challenger").drop("requested_at", "churned"), on=keys)
    return (
        pairs.filter(pl.col("churned").is_not_null())
        .sort("requested_at", "request_id")
        .unique("customer_id", keep="first", maintain_order=True)
    )
