"""The retraining rule: which failing check evaluations call for a retraining.

The rule needs memory across days, so it is a function of the check history and a
cursor rather than a declarative automation condition: a check must fail with ERROR on
N consecutive partition days, against the current champion, outside the cooldown after
the last retraining. Each new failing evaluation is looked at once (the cursor is the
highest evaluation id seen). Failures of a model replaced since do not count, so a
retrained champion must fail N new days of its own, after the cooldown, before
another retraining: no loops. ``platform_assets.defs.ml.sensors`` runs it on each tick.
"""

import json
from dataclasses import dataclass
from datetime import date, timedelta

import dagster as dg

from resources.policy import RetrainPolicy


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
class RetrainingDecision:
    requests: list[Evaluation]
    skipped: list[str]
    cursor: Cursor


def decide_retraining(
    evaluations: list[Evaluation], cursor: Cursor, champion: str | None, policy: RetrainPolicy
) -> RetrainingDecision:
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
    return RetrainingDecision(requests, skipped, Cursor(seen, last_retrain_day))
