"""LR-annealing law (Tissue et al. 2024): L(s) = L0 + A S1^-alpha - C S2, from the learning-rate schedule.

S1 is the forward area (sum of learning rates so far) and S2 the annealing area with momentum:
m_i = lam m_(i-1) + (eta_(i-1) - eta_i), S2 = sum of m_i. One law then predicts the loss along any schedule.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ladderlab.errors import LadderlabError
from ladderlab.scaling.engine.law import Data, FittedLaw, Law, Param


def lr_areas(lr_T: np.ndarray, lam: float = 0.999) -> tuple[np.ndarray, np.ndarray]:
    """S1 and S2 after each of T steps of the schedule lr_T (lr_T[i] is the rate used at step i+1)."""
    lr_T = np.asarray(lr_T, float)
    s1 = np.cumsum(lr_T)
    drop = np.diff(lr_T, prepend=lr_T[:1]) * -1.0
    m = np.empty_like(lr_T)
    acc = 0.0
    for i, d in enumerate(drop):
        acc = lam * acc + d
        m[i] = acc
    return s1, np.cumsum(m)


def areas_at(steps: np.ndarray, lrs: np.ndarray, lam: float = 0.999) -> tuple[np.ndarray, np.ndarray]:
    """S1, S2 at logged steps of one run (step 0: both 0), the rate between logged steps interpolated linearly."""
    steps = np.asarray(steps, float)
    if (steps < 0).any() or (steps != np.round(steps)).any():
        raise LadderlabError(f"annealing: steps must be whole numbers >= 0, got {steps[(steps < 0) | (steps != np.round(steps))][0]}")
    order = np.argsort(steps)
    every = np.arange(1, int(steps.max()) + 1)
    s1, s2 = lr_areas(np.interp(every, steps[order], np.asarray(lrs, float)[order]), lam)
    idx = steps.astype(int)
    return np.concatenate([[0.0], s1])[idx], np.concatenate([[0.0], s2])[idx]


class Annealing(Law):
    """Inputs S1, S2 (see lr_areas); parameters L0, A, alpha, C."""

    name = "annealing"
    inputs = ("S1", "S2")
    positive = ("S1",)  # S2 is 0 until the rate first drops
    params = (
        Param("L0", True, -10.0, 5.0, (-0.5, 0.0, 0.5, 1.0, 1.5)),
        Param("A", True, -15.0, 10.0, (-4.0, -2.0, 0.0, 2.0)),
        Param("alpha", False, 0.0, 4.0, (0.1, 0.3, 0.5, 1.0)),
        Param("C", False, 0.0, 1e4, (0.0, 0.1, 1.0, 10.0)),
    )

    def __init__(self, lam: float = 0.999):
        self.lam = lam

    def spec(self) -> dict[str, Any]:
        return {"lam": self.lam}

    def predict_batch(self, theta_SxP: np.ndarray, x: Data) -> np.ndarray:
        log_l0, log_a, alpha, c = (theta_SxP[:, i : i + 1] for i in range(4))
        s1, s2 = x["S1"][None, :], x["S2"][None, :]
        return np.exp(log_l0) + np.exp(log_a - alpha * np.log(s1)) - c * s2


def predict_schedule(fitted: FittedLaw, lr_T: np.ndarray) -> np.ndarray:
    """Loss after every step of a whole learning-rate schedule."""
    s1, s2 = lr_areas(lr_T, fitted.law.lam)
    return fitted.predict(S1=s1, S2=s2)
