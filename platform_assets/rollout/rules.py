"""Champion against challenger on live traffic, and the automatic advance, rollback or promotion that follows.

``judge_rollout`` is a pure function over the audit rows (``platform_assets.rollout.evidence``
holds its statistics). Operational evidence comes from the window's requests, each
model timed on its own: a rollback needs a breach the bounds prove (error rate over
budget and above the champion's, latency p95 over the SLA), a step forward needs
compliance they prove. Quality is paired: the same customers scored by both models
(shadow scores the very requests the champion answers; the champion silently scores
the canary's), each customer once, compared by DeLong's test on the outcomes that have
matured, with alpha spent over the daily looks (O'Brien-Fleming-type for a promotion,
which early looks make nearly impossible; Bonferroni for a rollback, a safety action). Until outcomes mature the verdict is
operational plus the score distribution, and says so; a promotion then waits
(``PLATFORM_ROLLOUT_QUALITY=matured``) or rests on the offline gate (``offline_gate``).

Under the staged mode a challenger serves in shadow first; the verdict ``advance``
moves it to canary, and only a canary is promoted. The ``rollout_on_report`` sensor
(``platform_assets.defs.serving.rollout``)
reads the report's check evaluations with the last record id as cursor (like
``retrain_on_failed_checks``): each evaluation is looked at once, only the newest
counts, and only while the version it judged is still the challenger, so an action is
requested once and never loops. The action is a run of ``rollout_action``, tagged with
its reason; it appends the step to the version's decision history.
"""

from dataclasses import dataclass, field
from datetime import UTC, datetime

import dagster as dg
import numpy as np
import polars as pl

from platform_assets.monitoring.drift import psi
from platform_assets.rollout.evidence import (
    delong,
    error_evidence,
    latency_evidence,
    paired_customers,
)
from platform_assets.sequential import look_alpha
from platform_assets.serving.state import CANARY_ROLLED_BACK, STAGE, live_challenger
from resources.model_registry import CHALLENGER, CHAMPION, ModelRegistry

ROLLOUT_CHECK = "rollout"
MIN_OPERATIONAL_REQUESTS = 50  # below this, no bound on an error rate or a p95 is worth acting on
ROLLBACK, PROMOTE, ADVANCE, WAIT = "rollback", "promote", "advance", "wait"


@dataclass(frozen=True)
class RolloutRules:
    latency_sla_ms: float
    error_budget: float
    min_requests: int
    auc_tolerance: float
    window_days: int
    alpha: float = 0.05  # two-sided: each direction one-sided alpha / 2
    min_customers: int = 30  # matured paired customers, churned and not each
    max_looks: int = 30
    quality: str = "matured"  # or "offline_gate"

    @property
    def operational_level(self) -> float:
        """One-sided level of a rollback look: Bonferroni over the looks a rollout may take."""
        return self.alpha / 2 / self.max_looks

    @property
    def compliance_level(self) -> float:
        """One-sided level at which a step forward needs the error rate and p95 shown within bounds."""
        return self.alpha / 2


@dataclass(frozen=True)
class RolloutVerdict:
    action: str  # rollback, advance, promote or wait
    reasons: tuple[str, ...]
    figures: pl.DataFrame = field(repr=False)
    evidence: dict = field(default_factory=dict)

    @property
    def summary(self) -> str:
        return f"{self.action}: " + "; ".join(self.reasons)


def per_request(rows: pl.DataFrame) -> pl.DataFrame:
    """One row per request of one model: failed if any of its rows failed, and that model's own time."""
    if rows.is_empty():
        return pl.DataFrame(schema={"request_id": pl.String, "failed": pl.Boolean, "latency_ms": pl.Float64})
    return rows.group_by("request_id").agg(
        failed=(pl.col("status") == "error").any(), latency_ms=pl.col("latency_ms").first()
    )


def side_figures(rows: pl.DataFrame, side: str) -> dict:
    """Requests, customers, errors, latency and scores of one side (champion or challenger) of the window."""
    requests = per_request(rows)
    ok = rows.filter(pl.col("status") == "ok")
    latency = requests.filter(~pl.col("failed"))["latency_ms"].to_numpy()
    scores = ok["churn_probability"].to_numpy()
    quantile = lambda a, q: float(np.quantile(a, q)) if a.size else float("nan")  # noqa: E731
    errors = int(requests["failed"].sum())
    return {
        "side": side,
        "rows": rows.height,
        "requests": requests.height,
        "customers": rows["customer_id"].n_unique() if rows.height else 0,
        "failed_requests": errors,
        "error_rate": errors / requests.height if requests.height else float("nan"),
        "latency_p50_ms": quantile(latency, 0.5),
        "latency_p95_ms": quantile(latency, 0.95),
        "mean_score": float(scores.mean()) if scores.size else float("nan"),
        "score_p90": quantile(scores, 0.9),
    }


def _score_psi(champion: pl.DataFrame, challenger: pl.DataFrame) -> float | None:
    a = champion.filter(pl.col("status") == "ok")["churn_probability"].to_numpy()
    b = challenger.filter(pl.col("status") == "ok")["churn_probability"].to_numpy()
    if not (a.size and b.size):
        return None
    edges = np.unique(np.quantile(a, np.linspace(0, 1, 11)[1:-1]))
    shares = [np.bincount(np.searchsorted(edges, s), minlength=edges.size + 1) / s.size for s in (a, b)]
    return float(psi(*shares))


def quality_evidence(paired: pl.DataFrame, look: int, rules: RolloutRules) -> tuple[dict, str]:
    """The paired ROC AUC comparison at this look, or why there is none yet."""
    churned = int(paired["churned"].sum()) if paired.height else 0
    if min(churned, paired.height - churned) < rules.min_customers:
        return {"evaluated": False, "customers": paired.height, "churned": churned}, (
            f"quality not evaluated yet: {paired.height} live customers scored by both models have matured "
            f"outcomes, {churned} churned (at least {rules.min_customers} churned and {rules.min_customers} not); "
            "until then the verdict is operational and the score distribution"
        )
    level = look_alpha(rules.alpha / 2, look, rules.max_looks)
    result = delong(
        paired["churned"].cast(pl.Boolean).to_numpy(),
        paired["champion"].to_numpy(),
        paired["challenger"].to_numpy(),
    )
    low, high = result.interval(level) if level > 0 else (float("-inf"), float("inf"))
    figures = {
        "evaluated": True,
        "customers": result.customers,
        "churned": result.churned,
        "champion_auc": result.champion_auc,
        "challenger_auc": result.challenger_auc,
        "auc_difference": result.difference,
        "difference_low": low,
        "difference_high": high,
        "p_better": result.p_better(),
        "p_worse": result.p_worse(rules.auc_tolerance),
        "look": look,
        "looks": rules.max_looks,
        "look_level": level,
    }
    text = (
        f"paired ROC AUC {result.challenger_auc:.3f} vs champion {result.champion_auc:.3f} on the same "
        f"{result.customers} customers ({result.churned} churned), difference {result.difference:+.4f} "
        f"[{low:+.4f}, {high:+.4f}], DeLong one-sided p {result.p_better():.4f} better / "
        f"{figures['p_worse']:.4f} worse by {rules.auc_tolerance}, look {look} of {rules.max_looks} "
        f"at level {level:.5f} (O'Brien-Fleming spending of {rules.alpha / 2})"
    )
    return figures, text


def judge_rollout(
    champion: pl.DataFrame,
    challenger: pl.DataFrame,
    live_days: int,
    rules: RolloutRules,
    paired: pl.DataFrame | None = None,
    look: int = 1,
    stage: str = "canary",
    staged: bool = False,
) -> RolloutVerdict:
    """Judge the window's audit rows of both sides, and the paired matured customers of the live period.

    ``champion`` holds the champion's answered rows, ``challenger`` the challenger's rows
    of its current stage; ``paired`` is ``paired_customers`` of the live period (None:
    pair the window's rows); ``look`` counts the quality looks so far, this one included.
    """
    figures = [side_figures(champion, "champion"), side_figures(challenger, "challenger")]
    ours, theirs = figures[1], figures[0]
    ours["score_psi_vs_champion"] = _score_psi(champion, challenger)
    frame = pl.DataFrame(figures)
    if challenger.is_empty():
        return RolloutVerdict(WAIT, ("not evaluated: the challenger served no request in the window",), frame)
    level = rules.operational_level
    errors = error_evidence(
        ours["failed_requests"], ours["requests"], theirs["failed_requests"], theirs["requests"], level
    )
    compliance = error_evidence(
        ours["failed_requests"], ours["requests"], theirs["failed_requests"], theirs["requests"], rules.compliance_level
    )
    latency = per_request(challenger).filter(~pl.col("failed"))["latency_ms"].to_numpy()
    timing = latency_evidence(latency, rules.latency_sla_ms)
    if paired is None:
        paired = paired_customers(champion, challenger)
    quality, quality_text = quality_evidence(paired, look, rules)
    evidence = {
        "operational_level": level,
        "compliance_level": rules.compliance_level,
        "error_rate_low": errors.low,
        "error_rate_high": compliance.high,
        "error_p_above_champion": errors.p_above_champion,
        "latency_p95_ms": timing.p95 if timing else None,
        "latency_p_over_sla": timing.p_over_sla if timing else None,
        "latency_p_within_sla": timing.p_within_sla if timing else None,
        **{f"quality_{k}": v for k, v in quality.items()},
        "stage": stage,
        "quality_rule": rules.quality,
    }
    enough = ours["requests"] >= MIN_OPERATIONAL_REQUESTS
    breaches = []
    if enough and timing and timing.p_over_sla < level:
        breaches.append(
            f"latency p95 {timing.p95:.2f} ms breaches the SLA of {rules.latency_sla_ms} ms "
            f"(one-sided lower bound {timing.bound('low', level):.2f} ms over {timing.requests} requests)"
        )
    if enough and errors.over(rules.error_budget, level):
        breaches.append(
            f"error rate {errors.rate:.2%} ({errors.errors} of {errors.requests} requests) breaches the budget of "
            f"{rules.error_budget:.2%} (lower bound {errors.low:.2%}) and is above the champion's "
            f"{theirs['error_rate']:.2%} (p {errors.p_above_champion:.2g})"
        )
    if quality["evaluated"] and quality["p_worse"] < level:  # a safety action: Bonferroni, as operational
        breaches.append(f"does worse: {quality_text}")
    if breaches:
        return RolloutVerdict(ROLLBACK, tuple(breaches), frame, evidence)
    waits = []
    if ours["requests"] < rules.min_requests:
        waits.append(f"{ours['requests']} challenger requests, {rules.min_requests} needed")
    if live_days < rules.window_days:
        waits.append(f"live in {stage} on {live_days} of the {rules.window_days} days of the window")
    if not compliance.within(rules.error_budget):
        waits.append(
            f"error rate {compliance.rate:.2%} not yet shown within {rules.error_budget:.2%} "
            f"(upper bound {compliance.high:.2%})"
        )
    if timing is None or timing.p_within_sla >= rules.compliance_level:
        shown = (
            f"p95 {timing.p95:.2f} ms, upper bound {timing.bound('high', rules.compliance_level):.2f} ms"
            if timing
            else "no timed request"
        )
        waits.append(f"latency not yet shown within {rules.latency_sla_ms} ms ({shown})")
    within = "operational evidence within the SLA and budget" if not waits else None
    if staged and stage == "shadow":
        if waits:
            return RolloutVerdict(WAIT, (*waits, quality_text), frame, evidence)
        return RolloutVerdict(ADVANCE, (f"shadow served {live_days} days: {within}", quality_text), frame, evidence)
    if rules.quality == "matured":
        if not quality["evaluated"]:
            waits.append(quality_text)
        elif look > rules.max_looks:
            waits.append(f"the {rules.max_looks} quality looks are spent ({quality_text}): promote by hand")
        elif quality["p_better"] >= quality["look_level"]:
            waits.append(f"not significantly better: {quality_text}")
    if waits:
        return RolloutVerdict(WAIT, tuple(waits), frame, evidence)
    on = (
        f"better on matured outcomes: {quality_text}"
        if rules.quality == "matured"
        else f"quality on the offline gate's verdict ({quality_text})"
    )
    return RolloutVerdict(PROMOTE, (f"won over {rules.window_days} days", within, on), frame, evidence)


def apply_action(registry: ModelRegistry, action: str, version: str, reason: str) -> str:
    """Carry out a rollout action on a live challenger, appending it to the version's decision history."""
    client = registry.activate()
    if live_challenger(registry.version(CHALLENGER), registry.version(CHAMPION)) is None or (
        registry.version(CHALLENGER).version != version
    ):
        return f"v{version} is no longer a live challenger: nothing to do"
    if action == ROLLBACK:
        client.set_model_version_tag(registry.model_name, version, CANARY_ROLLED_BACK, datetime.now(UTC).isoformat())
        registry.record(version, "rollout", "rolled_back", reason)
    elif action == ADVANCE:
        client.set_model_version_tag(registry.model_name, version, STAGE, "canary")
        registry.record(version, "rollout", "canary", reason)
    elif action == PROMOTE:
        registry.promote(version)
        registry.record(version, "promotion", "promoted", f"rollout: {reason}")
    else:
        raise dg.Failure(f"unknown rollout action {action!r}")
    return f"{action} of {registry.model_name} v{version}: {reason}"
