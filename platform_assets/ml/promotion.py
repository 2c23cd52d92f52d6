"""The promotion rules, as a pure function of the two models' figures on the same window."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GateRules:
    auc_floor: float
    auc_tolerance: float
    calibration_tolerance: float
    max_segment_gap: float


@dataclass(frozen=True)
class Decision:
    verdict: str  # "promoted", "refused" or "unchanged"
    reasons: tuple[str, ...]

    @property
    def promote(self) -> bool:
        return self.verdict == "promoted"

    @property
    def summary(self) -> str:
        return f"{self.verdict}: " + "; ".join(self.reasons)


def decide(challenger: dict, champion: dict | None, rules: GateRules) -> Decision:
    """Promote the challenger only if it clears every rule; say which ones it failed."""
    if champion is not None and champion["version"] == challenger["version"]:
        return Decision("unchanged", (f"version {challenger['version']} is already the champion",))
    failed, passed = [], []
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
    (passed if gap <= rules.max_segment_gap else failed).append(
        f"largest segment gap {gap:.3f} vs bound {rules.max_segment_gap:.3f}"
    )
    subject = f"challenger v{challenger['version']}"
    if failed:
        return Decision("refused", (f"{subject} refused", *(f"failed {r}" for r in failed)))
    return Decision("promoted", (f"{subject} promoted", *(f"passed {r}" for r in passed)))
