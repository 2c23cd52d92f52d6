"""The promotion gate: its rules, as a pure function of the two models' figures on the same window, the
rows that window holds, and what a decision does to the registry."""

from __future__ import annotations

from dataclasses import dataclass

import dagster as dg
import polars as pl
from pydantic import Field

from platform_assets.ml.sample import read_sample
from resources.model_registry import GATE, ModelRegistry
from resources.settings import settings
from resources.warehouse import Warehouse


class PromotionConfig(dg.Config):
    """The gate's rules, as run config of ``champion_model``."""

    auc_floor: float = Field(default=0.65, description="ROC AUC the first model must reach to be promoted.")
    auc_tolerance: float = Field(default=0.01, description="How far below the champion's ROC AUC a challenger may be.")
    calibration_tolerance: float = Field(
        default=0.02, description="How much worse than the champion's calibration error a challenger may be."
    )
    max_segment_gap: float = Field(default=0.15, description="Largest ROC AUC gap across segment values allowed.")


@dataclass(frozen=True)
class GateDecision:
    verdict: str  # "passed", "refused" or "unchanged"
    reasons: tuple[str, ...]

    @property
    def promote(self) -> bool:
        """It passed: promoted at once, or made the live challenger (``model_assets.apply_gate``)."""
        return self.verdict == "passed"

    @property
    def summary(self) -> str:
        return f"{self.verdict}: " + "; ".join(self.reasons)


def refuse(challenger: str, reason: str) -> GateDecision:
    """The gate cannot judge honestly (no window, or a window a contender trained on)."""
    return GateDecision("refused", (f"challenger v{challenger} refused", f"not judged: {reason}"))


def decide(challenger: dict, champion: dict | None, rules: PromotionConfig) -> GateDecision:
    """Pass the challenger only if it clears every rule; say which ones it failed.

    ``segment_gap`` None means fairness could not be measured (no declared segment, or
    too few churners): that is said, not counted as a pass.
    """
    if champion is not None and champion["version"] == challenger["version"]:
        return GateDecision("unchanged", (f"version {challenger['version']} is already the champion",))
    failed, passed, unjudged = [], [], []
    auc, gap = challenger["roc_auc"], challenger["segment_gap"]
    if champion is None:
        target = rules.auc_floor
        (passed if auc >= target else failed).append(f"ROC AUC {auc:.3f} vs floor {target:.3f} for a first model")
    else:
        target = champion["roc_auc"] - rules.auc_tolerance
        (passed if auc >= target else failed).append(
            f"ROC AUC {auc:.3f} vs champion v{champion['version']} {champion['roc_auc']:.3f} "
            f"(tolerance {rules.auc_tolerance:.3f})"
        )
        worst = champion["calibration_error"] + rules.calibration_tolerance
        error = challenger["calibration_error"]
        (passed if error <= worst else failed).append(
            f"calibration error {error:.3f} vs champion {champion['calibration_error']:.3f} "
            f"(tolerance {rules.calibration_tolerance:.3f})"
        )
    if gap is None:
        unjudged.append(f"segment gap not evaluated ({challenger.get('segment_reason') or 'no segments'})")
    else:
        (passed if gap <= rules.max_segment_gap else failed).append(
            f"largest segment gap {gap:.3f} vs bound {rules.max_segment_gap:.3f}"
        )
    subject = f"challenger v{challenger['version']}"
    if failed:
        return GateDecision("refused", (f"{subject} refused", *(f"failed {r}" for r in failed), *unjudged))
    return GateDecision("passed", (f"{subject} passed the gate", *(f"passed {r}" for r in passed), *unjudged))


def apply_gate(registry: ModelRegistry, version: str, champion, decision) -> tuple[str, str]:
    """What the gate's decision does to the registry, appended to the version's history.

    Returns the outcome (``promoted``, ``challenger``, ``refused`` or ``unchanged``) and what was done.
    """
    client = registry.activate()
    if decision.verdict == "unchanged":
        return "unchanged", decision.summary
    passed = decision.promote
    if not client.get_model_version(registry.model_name, version).tags.get(GATE):
        # the gate's own verdict, written once: later steps append to the history instead
        client.set_model_version_tag(registry.model_name, version, GATE, "passed" if passed else "refused")
        for key, value in {"promotion_decision": decision.verdict, "promotion_reason": decision.summary}.items():
            client.set_model_version_tag(registry.model_name, version, key, value[:5000])
    registry.record(version, "gate", "passed" if passed else "refused", decision.summary)
    if not passed:
        return "refused", f"v{version} refused by the offline gate: it receives no traffic"
    mode = settings().rollout_mode
    if champion is None or mode == "promote_on_gate":
        why = "first model: no champion to compare online" if champion is None else "rollout mode promote_on_gate"
        registry.promote(version)
        registry.record(version, "promotion", "promoted", f"on the offline gate ({why})")
        return "promoted", f"v{version} promoted on the offline gate ({why})"
    registry.make_challenger(version)
    serving = settings().serving_challenger_mode
    registry.record(version, "rollout", "challenger", f"live challenger ({serving}) until its online verdict")
    return "challenger", (
        f"v{version} is the live challenger ({serving}) against champion v{champion.version}, until its online verdict"
    )


def validation_rows(warehouse: Warehouse, spec, split) -> pl.DataFrame:
    """The rows of the training model a split validated on, read without the rest of the table, and
    past ``PLATFORM_TRAINING_MAX_ROWS`` a stratified sample of them (``read_sample``)."""
    if split.kind == "column":
        where, params = f"cast({split.column} as varchar) = 'validation'", None
    else:
        where, params = f"list_contains(?, {spec.snapshot})", [split.validation]
    return read_sample(warehouse, spec, settings().training_max_rows, where, params)[0]


def window_text(window: pl.DataFrame, spec) -> str:
    """The snapshot days of the rows judged, and how many rows."""
    if window.is_empty():
        return "no rows"
    days = sorted(window[spec.snapshot].unique().to_list())
    shown = ", ".join(map(str, days)) if len(days) <= 3 else f"{days[0]}..{days[-1]} ({len(days)} days)"
    return f"{window.height} rows of {shown}" + (f", split {spec.split} = validation" if spec.split else "")
