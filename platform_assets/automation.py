"""Self-healing: retrain when drift or performance checks keep failing, and a daily schedule.

The retraining rule is a sensor over the check evaluations rather than a declarative
automation condition, because it needs memory across days: a check must fail with
ERROR on N consecutive partition days, against the current champion, outside the
cooldown after the last retraining. Each new failing evaluation is looked at once
(the cursor is the highest evaluation id seen), and a retraining is requested at most
once for it (the run key names it). Failures of a model replaced since do not count,
so a retrained champion must fail N new days of its own, after the cooldown, before
another retraining: no loops.
"""

import json
from dataclasses import dataclass
from datetime import date, timedelta

import dagster as dg
from pydantic import Field

from platform_assets.datasets import DATASETS, DEFAULT
from platform_assets.jobs import daily_pipeline, retraining_job
from platform_assets.ml.feature_spec import Dataset
from platform_assets.monitoring.drift_reports import FEATURE_DRIFT_CHECK, PREDICTION_DRIFT_CHECK
from platform_assets.monitoring.performance_reports import PERFORMANCE_CHECK
from resources.model_registry import CHAMPION, ModelRegistry
from resources.settings import settings


def watched_checks(dataset: Dataset) -> tuple[dg.AssetCheckKey, ...]:
    """The drift and performance checks whose ERROR failures retrain a dataset's model."""
    return (
        dg.AssetCheckKey(dg.AssetKey(dataset.key("feature_drift_report")), FEATURE_DRIFT_CHECK),
        dg.AssetCheckKey(dg.AssetKey(dataset.key("prediction_drift_report")), PREDICTION_DRIFT_CHECK),
        dg.AssetCheckKey(dg.AssetKey(dataset.key("model_performance")), PERFORMANCE_CHECK),
    )


WATCHED_CHECKS = watched_checks(DEFAULT)
TRIGGER = "platform/trigger"
PARTITION = "platform/partition"


class RetrainPolicy(dg.ConfigurableResource):
    """When failing checks retrain the model (``PLATFORM_RETRAIN_CONSECUTIVE_DAYS``, ``..._COOLDOWN_DAYS``)."""

    consecutive_days: int = Field(default=3, description="Consecutive partition days a check must fail with ERROR.")
    cooldown_days: int = Field(default=7, description="Partition days after a retraining before the next one.")
    lookback: int = Field(default=400, description="Latest evaluations per check read on each tick.")


@dataclass(frozen=True)
class Evaluation:
    check: dg.AssetCheckKey
    id: int
    day: date
    status: str  # "ok", "warn" or "error"
    model_version: str | None
    description: str

    @property
    def failed(self) -> bool:
        """Failed with ERROR severity, the only failures that call for retraining."""
        return self.status == "error"

    @property
    def check_name(self) -> str:
        return f"{self.check.asset_key.to_user_string()}:{self.check.name}"


def read_evaluations(instance: dg.DagsterInstance, check: dg.AssetCheckKey, limit: int) -> list[Evaluation]:
    found = []
    for record in instance.event_log_storage.get_asset_check_execution_history(check, limit=limit):
        evaluation = record.evaluation
        if not isinstance(evaluation, dg.AssetCheckEvaluation) or record.partition is None:
            continue  # planned, still running, or skipped
        version = evaluation.metadata.get("model_version")
        found.append(
            Evaluation(
                check=check,
                id=record.id,
                day=date.fromisoformat(record.partition),
                status="ok" if evaluation.passed else evaluation.severity.value.lower(),
                model_version=version.value if version else None,
                description=evaluation.description or "",
            )
        )
    return found


@dataclass(frozen=True)
class Cursor:
    """What the sensor remembers between ticks: the last evaluation seen, the last retraining."""

    evaluation_id: int = 0
    last_retrain_day: date | None = None

    @classmethod
    def parse(cls, text: str | None) -> "Cursor":
        if not text:
            return cls()
        state = json.loads(text)
        day = state.get("last_retrain_day")
        return cls(state["evaluation_id"], date.fromisoformat(day) if day else None)

    def dump(self) -> str:
        day = self.last_retrain_day.isoformat() if self.last_retrain_day else None
        return json.dumps({"evaluation_id": self.evaluation_id, "last_retrain_day": day})


@dataclass(frozen=True)
class Decision:
    requests: list[Evaluation]
    skipped: list[str]
    cursor: Cursor


def decide_retraining(
    evaluations: list[Evaluation], cursor: Cursor, champion: str | None, policy: RetrainPolicy
) -> Decision:
    """Which new failing evaluations call for a retraining (a pure function, for tests)."""
    last_retrain_day = cursor.last_retrain_day
    latest: dict[tuple[dg.AssetCheckKey, date], Evaluation] = {}
    for evaluation in sorted(evaluations, key=lambda e: e.id):
        latest[(evaluation.check, evaluation.day)] = evaluation
    requests, skipped = [], []
    for evaluation in sorted((e for e in evaluations if e.id > cursor.evaluation_id and e.failed), key=lambda e: e.id):
        if latest[(evaluation.check, evaluation.day)].id != evaluation.id:
            continue  # the day was evaluated again since
        if champion is not None and evaluation.model_version != champion:
            skipped.append(
                f"{evaluation.check_name} {evaluation.day}: evaluated v{evaluation.model_version}, not the champion"
            )
            continue
        days = [evaluation.day - timedelta(days=n) for n in range(policy.consecutive_days)]
        streak = [latest.get((evaluation.check, d)) for d in days]
        if not all(e is not None and e.failed and e.model_version == evaluation.model_version for e in streak):
            skipped.append(
                f"{evaluation.check_name} {evaluation.day}: fewer than {policy.consecutive_days} failing days in a row"
            )
            continue
        if last_retrain_day is not None and (evaluation.day - last_retrain_day).days < policy.cooldown_days:
            skipped.append(
                f"{evaluation.check_name} {evaluation.day}: in the cooldown after the retraining for {last_retrain_day}"
            )
            continue
        requests.append(evaluation)
        last_retrain_day = evaluation.day
    seen = max([cursor.evaluation_id, *(e.id for e in evaluations)])
    return Decision(requests, skipped, Cursor(seen, last_retrain_day))


def retraining_sensor(dataset: Dataset) -> dg.SensorDefinition:
    """The retraining sensor of a declared dataset (the default one is ``retrain_on_failed_checks``)."""
    checks = watched_checks(dataset)
    name = f"retrain_{dataset.registered_model}_on_failed_checks" if dataset.prefix else "retrain_on_failed_checks"

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


retrain_on_failed_checks = retraining_sensor(DEFAULT)
OTHER_SENSORS = [retraining_sensor(d) for d in DATASETS if d != DEFAULT]


def retrain_policy() -> RetrainPolicy:
    return RetrainPolicy(
        consecutive_days=settings().retrain_consecutive_days,
        cooldown_days=settings().retrain_cooldown_days,
    )


daily_schedule = dg.build_schedule_from_partitioned_job(
    daily_pipeline,
    hour_of_day=1,
    name="daily_pipeline_schedule",
    description="Moves each new day through raw data, features, predictions and monitoring.",
    default_status=dg.DefaultScheduleStatus.RUNNING if settings().daily_schedule else dg.DefaultScheduleStatus.STOPPED,
)
