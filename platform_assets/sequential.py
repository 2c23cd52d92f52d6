"""Alpha spending over repeated looks: the one home of the sequential design both the rollout and the
campaign effect use.

O'Brien-Fleming-type spending (Lan and DeMets): by information fraction t, alpha(t) =
2 - 2 Phi(z_{1-alpha/2} / sqrt(t)) has been spent, all of it at t = 1. Each look tests at
its increment (a union bound over the looks: valid without the recursive integration of
exact group-sequential boundaries, and conservative). Written here because neither
statsmodels nor scipy has a spending function.
"""

from __future__ import annotations

import numpy as np


def spending(information: float, alpha: float) -> float:
    """O'Brien-Fleming-type alpha spent by information fraction ``information`` (all of it from 1 on)."""
    from scipy.special import ndtr, ndtri  # the standard normal's cdf and quantile

    if information <= 0:
        return 0.0
    return float(2 * ndtr(-ndtri(1 - alpha / 2) / np.sqrt(min(information, 1.0))))


def look_alpha(alpha: float, look: int, looks: int) -> float:
    """The level of look ``look`` of ``looks`` equally spaced looks: its increment (0 past the last)."""
    if look < 1 or look > looks:
        return 0.0
    return spending(look / looks, alpha) - spending((look - 1) / looks, alpha)
