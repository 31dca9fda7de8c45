"""Data-constrained law (Muennighoff et al. 2023): repeated tokens and excess parameters decay in value.

L(N, D, U) = E + A/N'^alpha + B/D'^beta with effective data D' = U + U R_D* (1 - exp(-R_D/R_D*)),
R_D = max(D/U - 1, 0) (U taken as min(U, D)), and effective parameters N' likewise from U_N = min(N, N_opt(U)).
"""

from __future__ import annotations

import numpy as np

from ladderlab.scaling.engine.law import Data, Law, Param
from ladderlab.scaling.laws.chinchilla import Chinchilla

# Muennighoff et al.'s fit on their 182 C4 runs: the base (a, b, e in log space, alpha tied to beta) and R*.
PUBLISHED_BASE = {
    "A": float(np.exp(6.255414)),
    "B": float(np.exp(7.3049974)),
    "E": float(np.exp(0.6254804)),
    "alpha": 0.3526596,
    "beta": 0.3526596,
}
PUBLISHED_R = {"R_D*": 15.387756, "R_N*": 5.309743}

_R_GRID = tuple(float(np.log(v)) for v in (0.5, 2.0, 5.0, 10.0, 20.0, 50.0))


def effective(unique: np.ndarray, total: np.ndarray, r_star: np.ndarray) -> np.ndarray:
    """U + U R* (1 - exp(-R/R*)) with R = max(total/unique - 1, 0): repeats count less and less."""
    repeats = np.maximum(total / unique - 1.0, 0.0)
    return unique + unique * r_star * -np.expm1(-repeats / r_star)


class DataConstrained(Law):
    """Chinchilla's five parameters plus R_D* and R_N*; usually fitted with the first five fixed."""

    name = "data-constrained"
    inputs = ("N", "D", "U")
    params = (
        *(Param(p.name, p.log, p.lo, p.hi, p.grid) for p in Chinchilla.params[:3]),
        Param("alpha", False, 0.01, 4.0, (0.25, 0.5, 1.0)),
        Param("beta", False, 0.01, 4.0, (0.25, 0.5, 1.0)),
        Param("R_D*", True, float(np.log(1e-3)), float(np.log(1e4)), _R_GRID),
        Param("R_N*", True, float(np.log(1e-3)), float(np.log(1e4)), _R_GRID),
    )

    def predict_batch(self, theta_SxP: np.ndarray, x: Data) -> np.ndarray:
        a, b, e, alpha, beta, log_rd, log_rn = (theta_SxP[:, i : i + 1] for i in range(7))
        n, d = x["N"][None, :], x["D"][None, :]
        u = np.minimum(x["U"][None, :], d)  # U_D: a run cannot see more unique tokens than it trains on
        # N_opt for a compute-optimal run whose data equals U: N = G (G U)^(beta/alpha).
        g = (alpha * np.exp(a) / (beta * np.exp(b))) ** (1.0 / (alpha + beta))
        u_n = np.minimum(n, g * (g * u) ** (beta / alpha))
        n_eff = effective(u_n, n, np.exp(log_rn))
        d_eff = effective(u, d, np.exp(log_rd))
        return np.exp(a - alpha * np.log(n_eff)) + np.exp(b - beta * np.log(d_eff)) + np.exp(e)
