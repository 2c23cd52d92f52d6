"""The rollout's Dagster side: the ``rollout_on_report`` sensor and the ``rollout_action`` job it launches.

The verdict is ``platform_assets.rollout.rules.judge_rollout`` (in ``rollout_report``'s
check); the sensor reads the check's evaluations with the last record id as cursor, so
each is looked at once, only the newest counts, and only while the version it judged is
still the challenger: an action is requested once and never loops.
"""

import json

import dagster as dg
from pydantic import Field

from platform_assets.ml.feature_spec import Dataset
from platform_assets.rollout.rules import ADVANCE, PROMOTE, ROLLBACK, ROLLOUT_CHECK, apply_action
from platform_assets.serving.state import STAGE, live_challenger
from resources.model_registry import CHALLENGER, CHAMPION, ModelRegistry
from resources.settings import settings


class RolloutAction(dg.Config):
    action: str = Field(
        description="`rollback` (out of live traffic), `advance` (shadow to canary) or `promote` (becomes champion)."
    )
    version: str = Field(description="The challenger version acted on.")
    reason: str = Field(description="Why, from the rollout report.")


def rollout_job(dataset: Dataset) -> dg.JobDefinition:
    """The job the rollout sensor launches: move a challenger out of live traffic, to canary, or promote it."""
    name = dataset.name("rollout_action")

    @dg.op(
        name=f"apply_{name}",
        description="Tags a rolled-back challenger, moves it from shadow to canary, or moves `champion` onto it; "
        "each step appended to the version's decision history.",
    )
    def apply_rollout(context: dg.OpExecutionContext, config: RolloutAction, registry: ModelRegistry) -> None:
        done = apply_action(registry.named(dataset.registered_model), config.action, config.version, config.reason)
        context.log.info(done)

    return dg.GraphDefinition(name=name, node_defs=[apply_rollout]).to_job(
        description=f"Rolls a `{dataset.registered_model}` challenger back out of live traffic, or promotes it; "
        "launched by the rollout sensor with the reason in its tags."
    )


def rollout_sensor(dataset: Dataset, job: dg.JobDefinition) -> dg.SensorDefinition:
    check = dg.AssetCheckKey(dg.AssetKey(dataset.key("rollout_report")), ROLLOUT_CHECK)
    name = dataset.name("rollout_on_report")

    @dg.sensor(
        name=name,
        job=job,
        minimum_interval_seconds=settings().sensor_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Rolls back a `{dataset.registered_model}` challenger whose rollout check failed, moves one "
        "that passed its shadow stage to canary, and promotes one the report says has won; once per evaluation, "
        "only while it is still the challenger.",
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
        if action not in (ROLLBACK, ADVANCE, PROMOTE):
            return dg.SkipReason(f"newest evaluation says {action}: {newest.evaluation.description}")
        champion = registry.version(CHAMPION)
        challenger = live_challenger(registry.version(CHALLENGER), champion)
        if challenger is None or challenger.version != version:
            return dg.SkipReason(f"v{version} is no longer a live challenger")
        if action == ADVANCE and challenger.tags.get(STAGE) == "canary":
            return dg.SkipReason(f"v{version} is already in canary")
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
