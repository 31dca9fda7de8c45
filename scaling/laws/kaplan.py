"""Kaplan et al. (2020) joint law L(N, D) = ((Nc/N)^(alpha_N/alpha_D) + Dc/D)^alpha_D and its compute-optimal
allocation (C = 6ND). It has no irreducible term, and its loss drop per doubling of D grows with N (the data term
weighs more once the size term is small): the regime of tiny ladders, where Chinchilla's E runs to its bound."""

from __future__ import annotations

import numpy as np

from ladderlab.scaling.engine.law import Data, Law, Param

_LOG_GRID = (10.0, 20.0, 30.0, 40.0)
_EXP_GRID = (0.05, 0.1, 0.3, 0.7)


class Kaplan(Law):
    """Fitted as log L = alpha_D LSE(alpha_N/alpha_D (log Nc - log N), log Dc - log D) from a 256-start grid."""

    name = "kaplan"
    inputs = ("N", "D")
    params = (
        Param("Nc", True, -20.0, 100.0, _LOG_GRID),
        Param("Dc", True, -20.0, 100.0, _LOG_GRID),
        Param("alpha_N", False, 0.0, 4.0, _EXP_GRID),
        Param("alpha_D", False, 1e-3, 4.0, _EXP_GRID),
    )

    def predict_batch(self, theta_SxP: np.ndarray, x: Data) -> np.ndarray:
        log_nc, log_dc, alpha_n, alpha_d = (theta_SxP[:, i : i + 1] for i in range(4))
        log_n, log_d = np.log(x["N"])[None, :], np.log(x["D"])[None, :]
        return np.exp(alpha_d * np.logaddexp(alpha_n / alpha_d * (log_nc - log_n), log_dc - log_d))


def compute_optimal(params: dict[str, float], flops: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    """N_opt(C), D_opt(C) minimising L subject to C = 6ND, with p = alpha_N/alpha_D: N^(p+1) = p Nc^p C / (6 Dc)."""
    p = params["alpha_N"] / params["alpha_D"]
    log_c6 = np.log(np.asarray(flops, float) / 6.0)
    n_opt = np.exp((np.log(p) + p * np.log(params["Nc"]) + log_c6 - np.log(params["Dc"])) / (p + 1.0))
    return n_opt, np.exp(log_c6) / n_opt
