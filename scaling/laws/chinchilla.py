"""Chinchilla law L(N, D) = E + A/N^alpha + B/D^beta and its compute-optimal allocation (C = 6ND)."""

from __future__ import annotations

import numpy as np

from ladderlab.scaling.engine.law import Data, Law, Param

_EXP_GRID = (0.0, 0.5, 1.0, 1.5, 2.0)
_COEF_GRID = (0.0, 5.0, 10.0, 15.0, 20.0, 25.0)


class Chinchilla(Law):
    """Hoffmann et al.: fitted as log L = LSE(a - alpha log N, b - beta log D, e) from the 4,500-start grid."""

    name = "chinchilla"
    inputs = ("N", "D")
    params = (
        Param("A", True, -20.0, 60.0, _COEF_GRID),
        Param("B", True, -20.0, 60.0, _COEF_GRID),
        Param("E", True, -10.0, 5.0, (-1.0, -0.5, 0.0, 0.5, 1.0)),
        Param("alpha", False, 0.0, 4.0, _EXP_GRID),
        Param("beta", False, 0.0, 4.0, _EXP_GRID),
    )

    def predict_batch(self, theta_SxP: np.ndarray, x: Data) -> np.ndarray:
        a, b, e, alpha, beta = (theta_SxP[:, i : i + 1] for i in range(5))
        log_n, log_d = np.log(x["N"])[None, :], np.log(x["D"])[None, :]
        return np.exp(a - alpha * log_n) + np.exp(b - beta * log_d) + np.exp(e)


def compute_optimal(params: dict[str, float], flops: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    """N_opt(C), D_opt(C) minimising L subject to C = 6ND: N = G (C/6)^(beta/(alpha+beta)), D = C/(6N)."""
    a_, b_, alpha, beta = params["A"], params["B"], params["alpha"], params["beta"]
    g = (alpha * a_ / (beta * b_)) ** (1.0 / (alpha + beta))
    c6 = np.asarray(flops, float) / 6.0
    n_opt = g * c6 ** (beta / (alpha + beta))
    return n_opt, c6 / n_opt
