"""Verdicts on loss predictions, decided from the backtests: how far past the fitted runs a prediction goes,
whether the fit has a parameter at its bound, and how wide the calibrated interval is there."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ladderlab.scaling.backtest.calibration import Calibration

PREDICTABLE_WIDTH = 0.03  # calibrated 90% half-width (fraction of the loss) at most this: "predictable"
UNPREDICTABLE_WIDTH = 0.10  # wider than this: "not predictable" (a 2x larger model gains ~3-5% loss)


@dataclass(frozen=True)
class Verdict:
    """`label` is "predictable", "uncertain" or "not predictable"; `reasons` says why (empty when predictable)."""

    label: str
    reasons: tuple[str, ...]

    @property
    def predictable(self) -> bool:
        return self.label == "predictable"

    def text(self) -> str:
        return self.label if not self.reasons else f"{self.label}: {'; '.join(self.reasons)}"


def judge(dist: float, scale: float | None, warnings: Sequence[str], calibration: Calibration) -> Verdict:
    """The verdict on one prediction at extrapolation distance `dist` (ln ratio past the largest fitted N or D)
    of a fit of this scale (its leave-largest-size-out error; None: no calibrated interval for this law)."""
    hard, soft = [], []
    if any("at its bound" in w for w in warnings):
        hard.append("a fitted parameter is at its bound")
    if any("did not converge" in w for w in warnings):
        hard.append("the fit did not converge")
    if np.exp(dist) > calibration.k:
        hard.append(f"{np.exp(dist):.3g}x past the largest fitted N or D; backtests cover up to {calibration.k:.3g}x")
    if scale is None:
        soft.append("no calibrated interval (needs a chinchilla or data-constrained fit on at least 3 sizes)")
    else:
        rel = float(np.expm1(calibration.half_width_at(dist, scale)))
        backtested = f"backtests at this distance: typical error {float(calibration.typical_error_at(dist, scale)):.1%}"
        if rel > UNPREDICTABLE_WIDTH:
            hard.append(f"calibrated 90% interval +-{rel:.1%} ({backtested})")
        elif rel > PREDICTABLE_WIDTH:
            soft.append(f"calibrated 90% interval +-{rel:.1%} ({backtested})")
    if hard:
        return Verdict("not predictable", tuple(hard + soft))
    return Verdict("uncertain" if soft else "predictable", tuple(soft))


def inside(actual: float, lo: float, hi: float) -> str:
    """How an actual value shown beside its interval is flagged: "inside" or "OUTSIDE"."""
    return "inside" if lo <= actual <= hi else "OUTSIDE"
