"""Retraining automation: sensor ticks over real check evaluations in a real instance and registry."""

import dagster as dg
import pytest

from platform_assets.definitions import build_definitions
from platform_assets.defs.datasets import default
from platform_assets.defs.ml.sensors import retraining_sensor, watched_checks
from platform_assets.partitions import daily_partitions
from resources.model_registry import CHAMPION
from resources.policy import RetrainPolicy
from tests.conftest import day

WATCHED_CHECKS = watched_checks(default())
FEATURE_DRIFT = WATCHED_CHECKS[0]
PERFORMANCE = WATCHED_CHECKS[2]


@pytest.fixture
def registry(resources):
    """A real MLflow registry (SQLite in the temp home) with versions 1 and 2; 1 is the champion."""
    registry = resources["registry"]
    client = registry.activate()
    client.create_registered_model(registry.model_name)
    for _ in range(2):
        client.create_model_version(registry.model_name, source="file:///nowhere", run_id=None)
    registry.promote("1")
    return registry


class Sensor:
    """Ticks the retraining sensor as the daemon does, keeping its cursor."""

    def __init__(self, instance, registry, policy=None):
        self.instance, self.registry, self.cursor = instance, registry, None
        self.policy = policy or RetrainPolicy(consecutive_days=3, cooldown_days=7)

    def tick(self) -> list[dg.RunRequest]:
        context = dg.build_sensor_context(
            instance=self.instance, cursor=self.cursor, resources={"registry": self.registry, "policy": self.policy}
        )
        requests = list(retraining_sensor(default())(context))
        self.cursor = context.cursor
        return requests


class Outcome(dg.Config):
    passed: bool
    severity: str
    version: str


def _stand_in(check: dg.AssetCheckKey) -> dg.AssetsDefinition:
    """An asset with the watched check's keys, whose run reports the evaluation a test asks for.

    The sensor reads only check evaluations; these come from real runs in the instance,
    exactly as the monitoring assets' do.
    """

    @dg.asset(
        key=check.asset_key,
        partitions_def=daily_partitions(),
        check_specs=[dg.AssetCheckSpec(check.name, asset=check.asset_key, partitions_def=daily_partitions())],
    )
    def stand_in(context: dg.AssetExecutionContext, config: Outcome):
        yield dg.MaterializeResult()
        yield dg.AssetCheckResult(
            check_name=check.name,
            passed=config.passed,
            severity=dg.AssetCheckSeverity[config.severity],
            description=f"minutes_7d effect size 0.31 on {context.partition_key}",
            metadata={"model_version": config.version},
        )

    return stand_in


STAND_INS = {check: _stand_in(check) for check in WATCHED_CHECKS}


def evaluate(instance, check, n: int, passed=False, severity="ERROR", version="1"):
    config = {"passed": passed, "severity": severity, "version": version}
    asset = STAND_INS[check]
    result = dg.materialize(
        [asset],
        instance=instance,
        partition_key=day(n).isoformat(),
        run_config={"ops": {asset.op.name: {"config": config}}},
    )
    assert result.success


def test_the_sensor_runs_by_default_and_targets_the_retraining():
    code_location = build_definitions()
    sensor = code_location.resolve_sensor_def("retrain_on_failed_checks")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert sensor.job_name == "retrain_model" == code_location.resolve_job_def("retrain_model").name
    assert code_location.resolve_schedule_def("daily_pipeline_schedule").job_name == "daily_pipeline"


def test_three_failing_days_request_exactly_one_retraining(instance, registry):
    sensor = Sensor(instance, registry)
    evaluate(instance, FEATURE_DRIFT, 10)
    evaluate(instance, FEATURE_DRIFT, 11)
    assert sensor.tick() == []
    evaluate(instance, FEATURE_DRIFT, 12)
    [request] = sensor.tick()
    assert request.tags["platform/trigger"] == "automation"
    assert request.tags["platform/check"] == "feature_drift_report:feature_drift"
    assert request.tags["platform/partition"] == day(12).isoformat()
    assert request.tags["platform/failing_days"] == f"{day(10)}..{day(12)}"
    assert request.tags["platform/model_version"] == "1"
    assert "effect size 0.31" in request.tags["platform/reason"]
    assert sensor.tick() == []  # nothing new, nothing requested
    evaluate(instance, FEATURE_DRIFT, 12)  # the same day evaluated again
    evaluate(instance, FEATURE_DRIFT, 13)
    assert sensor.tick() == []  # within the cooldown: no duplicate


def test_warnings_and_broken_streaks_do_not_retrain(instance, registry):
    sensor = Sensor(instance, registry)
    evaluate(instance, FEATURE_DRIFT, 10)
    evaluate(instance, FEATURE_DRIFT, 11, severity="WARN")
    evaluate(instance, FEATURE_DRIFT, 12)
    evaluate(instance, PERFORMANCE, 12)
    assert sensor.tick() == []
    evaluate(instance, FEATURE_DRIFT, 13, passed=True)
    evaluate(instance, FEATURE_DRIFT, 14)
    assert sensor.tick() == []


def test_no_loop_after_retraining_even_when_the_new_model_fails_again(instance, registry):
    sensor = Sensor(instance, registry)
    for n in (10, 11, 12):
        evaluate(instance, FEATURE_DRIFT, n)
    assert len(sensor.tick()) == 1
    registry.promote("2")  # the retraining produced a new champion

    for n in (13, 14, 15):  # the old model's late evaluations do not count any more
        evaluate(instance, FEATURE_DRIFT, n, version="1")
    assert sensor.tick() == []
    for n in (13, 14, 15, 16):  # the new model fails too, but within the cooldown
        evaluate(instance, FEATURE_DRIFT, n, version="2")
    assert sensor.tick() == []
    assert registry.version(CHAMPION).version == "2"

    for n in (19, 20, 21):  # a new streak after the cooldown retrains once more
        evaluate(instance, FEATURE_DRIFT, n, version="2")
    [request] = sensor.tick()
    assert request.tags["platform/partition"] == day(21).isoformat()
    assert request.tags["platform/model_version"] == "2"


def test_the_policy_is_configurable(instance, registry):
    sensor = Sensor(instance, registry, RetrainPolicy(consecutive_days=1, cooldown_days=0))
    evaluate(instance, PERFORMANCE, 40)
    assert [r.tags["platform/check"] for r in sensor.tick()] == ["model_performance:performance_decay"]
