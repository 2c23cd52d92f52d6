"""Champion against challenger on live traffic, and the automatic rollback or promotion that follows.

``judge_rollout`` is a pure function over the audit rows of the window: latency p95
and error rate of each side, their score distributions, and ROC AUC on the outcomes
that have matured (rows either version trained on left out), or "not evaluated" with
the reason. The challenger is rolled back when it breaches the latency SLA, the error
budget, or does worse than the champion by more than the tolerance; it is promoted
when it has served the whole window, enough requests, within budget, and its ROC AUC
on matured traffic is at least the champion's. Anything else waits for evidence.

The ``rollout_on_report`` sensor reads the report's check evaluations with the last
record id as cursor (like ``retrain_on_failed_checks``): each evaluation is looked at
once, only the newest counts, and only while the version it judged is still the
challenger, so an action is requested once and never loops. The action is a run of
``rollout_action``, tagged with its reason; it writes the reason on the model version.
"""

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime

import dagster as dg
import numpy as np
import polars as pl
from pydantic import Field

from platform_assets.monitoring.drift import psi
from platform_assets.serving.state import CANARY_ROLLED_BACK
from resources.model_registry import CHALLENGER, CHAMPION, ModelRegistry

ROLLOUT_CHECK = "rollout"
MIN_LATENCY_ROWS = 20
MIN_OUTCOMES = 20  # positives and negatives each, for a ROC AUC
ROLLBACK, PROMOTE, WAIT = "rollback", "promote", "wait"


@dataclass(frozen=True)
class RolloutRules:
    latency_sla_ms: float
    error_budget: float
    min_requests: int
    auc_tolerance: float
    window_days: int


@dataclass(frozen=True)
class Verdict:
    action: str  # rollback, promote or wait
    reasons: tuple[str, ...]
    figures: pl.DataFrame = field(repr=False)

    @property
    def summary(self) -> str:
        return f"{self.action}: " + "; ".join(self.reasons)


def side_figures(rows: pl.DataFrame, side: str) -> dict:
    """Requests, errors, latency and scores of one side (champion or challenger) of the window."""
    ok = rows.filter(pl.col("status") == "ok")
    latency = ok["latency_ms"].to_numpy()
    scores = ok["churn_probability"].to_numpy()
    quantile = lambda a, q: float(np.quantile(a, q)) if a.size else float("nan")  # noqa: E731
    return {
        "side": side,
        "rows": rows.height,
        "requests": rows["request_id"].n_unique(),
        "errors": rows.filter(pl.col("status") == "error").height,
        "error_rate": rows.filter(pl.col("status") == "error").height / rows.height if rows.height else float("nan"),
        "latency_p50_ms": quantile(latency, 0.5),
        "latency_p95_ms": quantile(latency, 0.95),
        "mean_score": float(scores.mean()) if scores.size else float("nan"),
        "score_p90": quantile(scores, 0.9),
    }


def matured_auc(rows: pl.DataFrame) -> tuple[float | None, str]:
    """ROC AUC on rows with a matured outcome (column ``churned``), or None and why not."""
    from platform_assets.ml.evaluation import metrics

    judged = rows.filter(pl.col("churned").is_not_null() & (pl.col("status") == "ok"))
    positives = int(judged["churned"].sum()) if judged.height else 0
    if min(positives, judged.height - positives) < MIN_OUTCOMES:
        return None, (
            f"not evaluated: {judged.height} matured rows, {positives} churned "
            f"(at least {MIN_OUTCOMES} churned and {MIN_OUTCOMES} not)"
        )
    auc = metrics(judged["churned"].cast(pl.Int64).to_numpy(), judged["churn_probability"].to_numpy())["roc_auc"]
    return float(auc), f"ROC AUC {auc:.3f} on {judged.height} matured rows"


def judge_rollout(champion: pl.DataFrame, challenger: pl.DataFrame, live_days: int, rules: RolloutRules) -> Verdict:
    """Compare the two sides of the window (audit rows, with ``churned`` where the outcome matured)."""
    figures = [side_figures(champion, "champion"), side_figures(challenger, "challenger")]
    aucs = [matured_auc(champion), matured_auc(challenger)]
    for side, (auc, text) in zip(figures, aucs, strict=True):
        side["roc_auc"] = auc if auc is not None else float("nan")
        side["roc_auc_note"] = text
    ours = figures[1]
    champion_scores = champion.filter(pl.col("status") == "ok")["churn_probability"].to_numpy()
    challenger_scores = challenger.filter(pl.col("status") == "ok")["churn_probability"].to_numpy()
    if champion_scores.size and challenger_scores.size:
        edges = np.unique(np.quantile(champion_scores, np.linspace(0, 1, 11)[1:-1]))
        shares = [
            np.bincount(np.searchsorted(edges, s), minlength=edges.size + 1) / s.size
            for s in (champion_scores, challenger_scores)
        ]
        ours["score_psi_vs_champion"] = psi(*shares)
    frame = pl.DataFrame(figures)
    if challenger.is_empty():
        return Verdict(WAIT, ("not evaluated: the challenger served no request in the window",), frame)
    breaches = []
    ok_rows = challenger.filter(pl.col("status") == "ok").height
    if ok_rows >= MIN_LATENCY_ROWS and ours["latency_p95_ms"] > rules.latency_sla_ms:
        breaches.append(f"latency p95 {ours['latency_p95_ms']:.2f} ms breaches the SLA of {rules.latency_sla_ms} ms")
    if ours["error_rate"] > rules.error_budget:
        breaches.append(
            f"error rate {ours['error_rate']:.2%} ({ours['errors']} of {ours['rows']}) breaches the budget "
            f"of {rules.error_budget:.2%}"
        )
    (champion_auc, champion_note), (challenger_auc, challenger_note) = aucs
    auc_text = f"challenger {challenger_note}, champion {champion_note}"
    evaluated = champion_auc is not None and challenger_auc is not None
    if evaluated and challenger_auc < champion_auc - rules.auc_tolerance:
        breaches.append(
            f"does worse: ROC AUC {challenger_auc:.3f} against the champion's {champion_auc:.3f} "
            f"(tolerance {rules.auc_tolerance})"
        )
    if breaches:
        return Verdict(ROLLBACK, tuple(breaches), frame)
    waits = []
    if ours["requests"] < rules.min_requests:
        waits.append(f"{ours['requests']} challenger requests, {rules.min_requests} needed")
    if live_days < rules.window_days:
        waits.append(f"live on {live_days} of the {rules.window_days} days of the window")
    if champion_auc is None or challenger_auc is None:
        waits.append(f"ROC AUC not evaluated ({auc_text})")
    elif challenger_auc < champion_auc:
        waits.append(f"ROC AUC {challenger_auc:.3f} within tolerance but below the champion's {champion_auc:.3f}")
    within = (
        f"latency p95 {ours['latency_p95_ms']:.2f} ms within {rules.latency_sla_ms} ms, "
        f"error rate {ours['error_rate']:.2%} within {rules.error_budget:.2%}"
    )
    if waits:
        return Verdict(WAIT, (within, *waits), frame)
    return Verdict(
        PROMOTE,
        (f"won over {rules.window_days} days", within, f"ROC AUC {challenger_auc:.3f} vs {champion_auc:.3f}"),
        frame,
    )


class RolloutAction(dg.Config):
    action: str = Field(description="`rollback` (out of live traffic) or `promote` (becomes champion).")
    version: str = Field(description="The challenger version acted on.")
    reason: str = Field(description="Why, from the rollout report.")


def rollout_job(dataset) -> dg.JobDefinition:
    """The job the rollout sensor launches: move a challenger out of live traffic, or promote it."""
    name = f"rollout_action_{dataset.registered_model}" if dataset.prefix else "rollout_action"

    @dg.op(name=f"apply_{name}", description="Tags a rolled-back challenger, or moves `champion` onto it.")
    def apply_rollout(context: dg.OpExecutionContext, config: RolloutAction, registry: ModelRegistry) -> None:
        registry = registry.named(dataset.registered_model)
        client = registry.activate()
        challenger = registry.version(CHALLENGER)
        if challenger is None or challenger.version != config.version or CANARY_ROLLED_BACK in challenger.tags:
            context.log.info(f"v{config.version} is no longer a live challenger: nothing to do")
            return
        if config.action == ROLLBACK:
            client.set_model_version_tag(
                registry.model_name, config.version, CANARY_ROLLED_BACK, datetime.now(UTC).isoformat()
            )
            client.set_model_version_tag(registry.model_name, config.version, "rollout_reason", config.reason[:5000])
        elif config.action == PROMOTE:
            registry.promote(config.version)
            client.set_model_version_tag(registry.model_name, config.version, "promotion_decision", "promoted")
            client.set_model_version_tag(
                registry.model_name, config.version, "promotion_reason", f"rollout: {config.reason}"[:5000]
            )
        else:
            raise dg.Failure(f"unknown rollout action {config.action!r}")
        context.log.info(f"{config.action} of {registry.model_name} v{config.version}: {config.reason}")

    return dg.GraphDefinition(name=name, node_defs=[apply_rollout]).to_job(
        description=f"Rolls a `{dataset.registered_model}` challenger back out of live traffic, or promotes it; "
        "launched by the rollout sensor with the reason in its tags."
    )


def rollout_sensor(dataset, job: dg.JobDefinition) -> dg.SensorDefinition:
    check = dg.AssetCheckKey(dg.AssetKey(dataset.key("rollout_report")), ROLLOUT_CHECK)
    name = f"rollout_{dataset.registered_model}_on_report" if dataset.prefix else "rollout_on_report"

    @dg.sensor(
        name=name,
        job=job,
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Rolls back a `{dataset.registered_model}` challenger whose rollout check failed, and promotes "
        "one the report says has won; once per evaluation, only while it is still the challenger.",
    )
    def rollout(context: dg.SensorEvaluationContext, registry: ModelRegistry):
        registry = registry.named(dataset.registered_model)
        seen = int(context.cursor or 0)
        records = context.instance.event_log_storage.get_asset_check_execution_history(check, limit=50)
        fresh = [r for r in records if r.id > seen and isinstance(r.evaluation, dg.AssetCheckEvaluation)]
        if not fresh:
            return dg.SkipReason("no new rollout evaluation")
        newest = max(fresh, key=lambda r: r.id)
        context.update_cursor(str(max(r.id for r in fresh)))
        metadata = {k: v.value for k, v in newest.evaluation.metadata.items()}
        action, version = metadata.get("action"), metadata.get("challenger_version")
        if action not in (ROLLBACK, PROMOTE):
            return dg.SkipReason(f"newest evaluation says {action}: {newest.evaluation.description}")
        challenger, champion = registry.version(CHALLENGER), registry.version(CHAMPION)
        if challenger is None or challenger.version != version or CANARY_ROLLED_BACK in challenger.tags:
            return dg.SkipReason(f"v{version} is no longer a live challenger")
        if champion is None or champion.version != metadata.get("champion_version"):
            return dg.SkipReason(
                f"the champion moved since the evaluation (judged against v{metadata.get('champion_version')})"
            )
        reason = newest.evaluation.description or action
        return dg.RunRequest(
            run_key=f"rollout:{action}:{version}:{newest.id}",
            run_config={
                "ops": {f"apply_{job.name}": {"config": {"action": action, "version": version, "reason": reason}}}
            },
            tags={
                "platform/trigger": "automation",
                "platform/action": action,
                "platform/model_version": version,
                "platform/partition": newest.partition or "",
                "platform/reason": reason[:250],
                "platform/evaluation": json.dumps({"record_id": newest.id}),
            },
        )

    return rollout
