"""Growth guidelines of the Stacking paper (Du et al. 2024): when to grow (d) and by how much (g), and refitting the
timing law from a user's own growth ladder. Pure numpy.

Timing law: log10(d) = a log10(N) + b / log10(C) + c, with d the small model's training tokens, N the target's
parameters and C the total FLOPs budget; the paper's fit is a = 0.88, b = 163.27, c = -5.74. Growth factor g
(non-embedding parameters large / small): 4 recommended (2-4 optimal in the paper's sweeps).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ladderlab.errors import LadderlabError

PAPER_TIMING = {"a": 0.88, "b": 163.27, "c": -5.74}
RECOMMENDED_FACTOR = 4


def growth_tokens(n_params: float, budget_flops: float, law: dict[str, float] = PAPER_TIMING) -> float:
    """d(N, C): tokens to train the small model before growing it (the timing law)."""
    if n_params <= 0 or budget_flops <= 1:
        raise LadderlabError(f"growth timing needs target params > 0 and a FLOPs budget > 1, got N={n_params:g}, "
                             f"C={budget_flops:g}")
    log_d = law["a"] * np.log10(n_params) + law["b"] / np.log10(budget_flops) + law["c"]
    return float(10.0**log_d)


@dataclass(frozen=True)
class GrowthPlan:
    """A growth run for a target of N parameters under a budget of C FLOPs (C = 6 n d + 6 N D)."""

    target_params: float
    budget_flops: float
    growth_factor: int
    growth_tokens: float  # d, on the small model
    small_params: float  # N / g
    large_tokens: float  # D, on the grown model, from what the budget leaves after the small model

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def plan_growth(n_params: float, budget_flops: float, factor: int = RECOMMENDED_FACTOR,
                law: dict[str, float] = PAPER_TIMING) -> GrowthPlan:
    """d from the timing law, the small model's size N / g, and the large model's tokens left by the budget."""
    if factor < 2:
        raise LadderlabError(f"growth factor g={factor}: must be an integer >= 2")
    d = growth_tokens(n_params, budget_flops, law)
    small = n_params / factor
    left = budget_flops - 6.0 * small * d
    if left <= 0:
        raise LadderlabError(f"budget C={budget_flops:g} FLOPs is spent by the small model alone "
                             f"(6 x {small:.3g} params x {d:.3g} tokens)")
    return GrowthPlan(n_params, budget_flops, factor, d, small, left / (6.0 * n_params))


def best_growth_tokens(d: np.ndarray, loss: np.ndarray) -> float:
    """The loss-minimising d of one IsoFLOP sweep: a parabola in log10(d) through (d, loss), as the paper fits."""
    d, loss = np.asarray(d, float), np.asarray(loss, float)
    if len(np.unique(d)) < 3 or np.any(d <= 0):
        raise LadderlabError(f"an IsoFLOP sweep needs >= 3 distinct positive growth timings d, got {sorted(set(d))}")
    x = np.log10(d)
    curv, slope, _ = np.polyfit(x, loss, 2)
    if curv <= 0:  # no interior minimum: take the best observed d
        return float(d[np.argmin(loss)])
    return float(10.0 ** np.clip(-slope / (2 * curv), x.min(), x.max()))


def fit_timing_law(n_params: np.ndarray, flops: np.ndarray, d: np.ndarray, loss: np.ndarray) -> dict[str, Any]:
    """Refit log10(d) = a log10(N) + b / log10(C) + c from a growth ladder: one row per run (target N, budget C,
    growth timing d, final loss). Each (N, C) group's best d comes from its IsoFLOP parabola; then least squares.
    """
    n_params, flops, d, loss = (np.asarray(v, float) for v in (n_params, flops, d, loss))
    groups = sorted(set(zip(n_params.tolist(), flops.tolist())))
    best = []
    for n, c in groups:
        rows = (n_params == n) & (flops == c)
        best.append((n, c, best_growth_tokens(d[rows], loss[rows])))
    n_b, c_b, d_b = (np.array(v) for v in zip(*best))
    features = np.stack([np.log10(n_b), 1.0 / np.log10(c_b), np.ones_like(n_b)], axis=1)
    if np.linalg.matrix_rank(features) < 3:
        raise LadderlabError(f"refitting the timing law needs IsoFLOP sweeps at >= 3 (N, C) pairs that vary both N "
                             f"and C; got {len(groups)}: {groups}")
    coef, *_ = np.linalg.lstsq(features, np.log10(d_b), rcond=None)
    a, b, c = (float(v) for v in coef)
    residual = np.log10(d_b) - features @ coef
    return {"a": a, "b": b, "c": c, "rmse_log10_d": float(np.sqrt(np.mean(residual**2))),
            "optima": [{"N": float(n), "C": float(cc), "d": float(dd)} for n, cc, dd in best]}
