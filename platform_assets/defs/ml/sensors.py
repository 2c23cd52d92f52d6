"""The retraining sensor: retrain when drift or performance checks keep failing.

The rule is ``platform_assets.ml.retraining.decide_retraining``; a retraining is
requested at most once per failing evaluation (the run key names it).
"""

from datetime import timedelta

import dagster as dg

from platform_assets.defs.ml.jobs import retraining_job
from platform_assets.ml.feature_spec import Dataset
from platform_assets.ml.retraining import Cursor, decide_retraining, read_evaluations
from platform_assets.monitoring.checks import FEATURE_DRIFT_CHECK, PERFORMANCE_CHECK, PREDICTION_DRIFT_CHECK
from resources.model_registry import CHAMPION, ModelRegistry
from resources.policy import RetrainPolicy
from resources.settings import settings


def watched_checks(dataset: Dataset) -> tuple[dg.AssetCheckKey, ...]:
    """The drift and performance checks whose ERROR failures retrain a dataset's model."""
    return (
        dg.AssetCheckKey(dg.AssetKey(dataset.key("feature_drift_report")), FEATURE_DRIFT_CHECK),
        dg.AssetCheckKey(dg.AssetKey(dataset.key("prediction_drift_report")), PREDICTION_DRIFT_CHECK),
        dg.AssetCheckKey(dg.AssetKey(dataset.key("model_performance")), PERFORMANCE_CHECK),
    )


TRIGGER = "platform/trigger"
PARTITION = "platform/partition"


def retraining_sensor(dataset: Dataset) -> dg.SensorDefinition:
    """The retraining sensor of a declared dataset."""
    checks = watched_checks(dataset)
    name = dataset.name("retrain_on_failed_checks")

    @dg.sensor(
        name=name,
        job=retraining_job(dataset),
        minimum_interval_seconds=settings().sensor_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            f"Retrains `{dataset.registered_model}`, then runs the promotion gate, when a drift or performance check "
            "fails with ERROR on N consecutive days against the champion, outside the cooldown; once per failing "
            "evaluation."
        ),
    )
    def retrain(context: dg.SensorEvaluationContext, registry: ModelRegistry, policy: RetrainPolicy):
        registry = registry.named(dataset.registered_model)
        evaluations = [e for check in checks for e in read_evaluations(context.instance, check, policy.lookback)]
        champion = registry.version(CHAMPION)
        decision = decide_retraining(
            evaluations, Cursor.parse(context.cursor), champion.version if champion else None, policy
        )
        for reason in decision.skipped:
            context.log.info(f"Not retraining: {reason}")
        for evaluation in decision.requests:
            first = evaluation.day - timedelta(days=policy.consecutive_days - 1)
            context.log.info(f"Retraining: {evaluation.check_name} failed {first}..{evaluation.day}")
            yield dg.RunRequest(
                run_key=f"retrain:{evaluation.check_name}:{evaluation.day}:{evaluation.id}",
                tags={
                    TRIGGER: "automation",
                    PARTITION: evaluation.day.isoformat(),
                    "platform/check": evaluation.check_name,
                    "platform/failing_days": f"{first}..{evaluation.day}",
                    "platform/model_version": evaluation.model_version or "",
                    "platform/reason": evaluation.description[:250],
                },
            )
        context.update_cursor(decision.cursor.dump())

    return retrain
