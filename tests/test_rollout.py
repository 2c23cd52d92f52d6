"""The rollout judgment on audit rows: each rule alone decides rollback, wait or promote, and says why."""

import numpy as np
import polars as pl
import pytest

from platform_assets.serving.rollout import PROMOTE, ROLLBACK, WAIT, RolloutRules, judge_rollout

RULES = RolloutRules(latency_sla_ms=5.0, error_budget=0.01, min_requests=200, auc_tolerance=0.01, window_days=2)


def _side(rows: int, *, latency_ms: float = 1.0, errors: int = 0, skill: float = 2.0, seed: int = 0) -> pl.DataFrame:
    """Audit rows of one side: churned customers score higher by ``skill`` (log-odds), matured outcomes."""
    rng = np.random.default_rng(seed)
    churned = rng.random(rows) < 0.2
    score = 1 / (1 + np.exp(-(rng.normal(-1.5, 1.0, rows) + skill * churned)))
    status = np.array(["ok"] * rows, dtype=object)
    status[:errors] = "error"
    return pl.DataFrame(
        {
            "request_id": [f"r{seed}-{i}" for i in range(rows)],
            "status": status.tolist(),
            "latency_ms": rng.gamma(4.0, latency_ms / 4.0, rows),
            "churn_probability": score,
            "churned": churned,
        }
    )


@pytest.mark.parametrize(
    ("challenger", "action", "reason"),
    [
        (_side(400, latency_ms=9.0, seed=1), ROLLBACK, "breaches the SLA of 5.0 ms"),
        (_side(400, errors=12, seed=1), ROLLBACK, "breaches the budget of 1.00%"),
        (_side(400, skill=0.3, seed=1), ROLLBACK, "does worse: ROC AUC"),
        (_side(100, seed=1), WAIT, "100 challenger requests, 200 needed"),
        (_side(400, skill=2.6, seed=1), PROMOTE, "won over 2 days"),
        (_side(0, seed=1), WAIT, "not evaluated: the challenger served no request"),
    ],
)
def test_each_rule_decides_and_says_why(challenger, action, reason):
    verdict = judge_rollout(_side(2000), challenger, live_days=2, rules=RULES)
    assert verdict.action == action and reason in verdict.summary, verdict.summary


def test_no_promotion_before_the_window_is_served_or_without_matured_outcomes():
    champion, better = _side(2000), _side(400, skill=2.6, seed=1)
    assert "live on 1 of the 2 days" in judge_rollout(champion, better, 1, RULES).summary
    unlabelled = better.with_columns(churned=pl.lit(None, pl.Boolean))
    verdict = judge_rollout(champion, unlabelled, 2, RULES)
    assert verdict.action == WAIT and "ROC AUC not evaluated" in verdict.summary
    assert verdict.figures.filter(pl.col("side") == "challenger")["score_psi_vs_champion"][0] >= 0
