"""The promotion rules, as a pure function of the two models' figures on the same window."""

from __future__ import annotations

from dataclasses import dataclass

import dagster as dg
from pydantic import Field


class PromotionConfig(dg.Config):
    """The gate's rules, as run config of ``champion_model``."""

    auc_floor: float = Field(default=0.65, description="ROC AUC the first model must reach to be promoted.")
    auc_tolerance: float = Field(default=0.01, description="How far below the champion's ROC AUC a challenger may be.")
    calibration_tolerance: float = Field(
        default=0.02, description="How much worse than the champion's calibration error a challenger may be."
    )
    max_segment_gap: float = Field(default=0.15, description="Largest ROC AUC gap across segment values allowed.")


@dataclass(frozen=True)
class Decision:
    verdict: str  # "passed", "refused" or "unchanged"
    reasons: tuple[str, ...]

    @property
    def promote(self) -> bool:
        """It passed: promoted at once, or made the live challenger (``model_assets.apply_gate``)."""
        return self.verdict == "passed"

    @property
    def summary(self) -> str:
        return f"{self.verdict}: " + "; ".join(self.reasons)


def refuse(challenger: str, reason: str) -> Decision:
    """The gate cannot judge honestly (no window, or a window a contender trained on)."""
    return Decision("refused", (f"challenger v{challenger} refused", f"not judged: {reason}"))


def decide(challenger: dict, champion: dict | None, rules: PromotionConfig) -> Decision:
    """Pass the challenger only if it clears every rule; say which ones it failed.

    ``segment_gap`` None means fairness could not be measured (no declared segment, or
    too few churners): that is said, not counted as a pass.
    """
    if champion is not None and champion["version"] == challenger["version"]:
        return Decision("unchanged", (f"version {challenger['version']} is already the champion",))
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
        return Decision("refused", (f"{subject} refused", *(f"failed {r}" for r in failed), *unjudged))
    return Decision("passed", (f"{subject} passed the gate", *(f"passed {r}" for r in passed), *unjudged))
