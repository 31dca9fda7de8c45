"""Refine many fits of one law at once: weighted Levenberg-Marquardt, vectorised over fits.

Bootstrap replicates are the same data under different row weights (resample counts), so B refits from a good
start are one array computation: forward-difference Jacobians of all B fits in one `predict_batch` call, Huber
handled by iteratively reweighted least squares, bounds by freezing parameters pushed against them.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from scipy.special import huber

Residuals = Callable[[np.ndarray], np.ndarray]  # theta_SxP -> residuals_SxN


def weighted_objective(r_BxN: np.ndarray, w_BxN: np.ndarray, loss: str, delta: float) -> np.ndarray:
    """Sum of w * Huber(r) (or w * r^2) per fit; non-finite -> inf."""
    with np.errstate(all="ignore"):
        val = (w_BxN * (huber(delta, r_BxN) if loss == "huber" else r_BxN * r_BxN)).sum(axis=1)
    return np.where(np.isfinite(val), val, np.inf)


def refine_batch(
    residuals: Residuals,
    theta_BxP: np.ndarray,
    w_BxN: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    loss: str = "huber",
    delta: float = 1e-3,
    max_iter: int = 3000,
    rtol: float = 1e-10,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Minimise each fit's weighted objective from its start; returns (theta_BxP, objective_B, converged_B)."""
    theta = np.clip(np.array(theta_BxP, float), lo, hi)
    n_fit, n_par = theta.shape
    lam = np.full(n_fit, 1e-3)
    with np.errstate(all="ignore"):
        r = residuals(theta)
    f = weighted_objective(r, w_BxN, loss, delta)
    done = ~np.isfinite(f)
    stalls = np.zeros(n_fit, int)
    eye = np.eye(n_par)
    for _ in range(max_iter):
        act = np.flatnonzero(~done)
        if act.size == 0:
            break
        th, ra, wa = theta[act], r[act], w_BxN[act]
        h = 1e-7 * np.maximum(1.0, np.abs(th))
        h = np.where(th + h > hi, -h, h)  # step inward at an upper bound
        shifted = np.repeat(th[:, None, :], n_par, axis=1)
        shifted[:, np.arange(n_par), np.arange(n_par)] += h
        with np.errstate(all="ignore"):
            r_shift = residuals(shifted.reshape(-1, n_par)).reshape(act.size, n_par, -1)
        jac = (r_shift - ra[:, None, :]) / h[:, :, None]  # B x P x N
        jac = np.where(np.isfinite(jac), jac, 0.0)
        u = wa if loss != "huber" else wa * np.where(np.abs(ra) <= delta, 1.0, delta / np.maximum(np.abs(ra), 1e-300))
        grad = np.einsum("bpn,bn->bp", jac, u * ra)
        hess = np.einsum("bpn,bn,bqn->bpq", jac, u, jac)
        frozen = ((th <= lo) & (grad > 0)) | ((th >= hi) & (grad < 0))
        grad = np.where(frozen, 0.0, grad)
        keep = ~frozen[:, :, None] & ~frozen[:, None, :]
        hess = np.where(keep, hess, 0.0) + eye * frozen[:, :, None]
        diag = np.einsum("bpp->bp", hess)
        damped = hess + (lam[act, None, None] * np.maximum(diag, 1e-12)[:, :, None]) * eye
        try:
            step = -np.linalg.solve(damped, grad[:, :, None])[:, :, 0]
        except np.linalg.LinAlgError:
            step = -grad / np.maximum(np.einsum("bpp->bp", damped), 1e-12)
        trial = np.clip(th + step, lo, hi)
        with np.errstate(all="ignore"):
            r_trial = residuals(trial)
        f_trial = weighted_objective(r_trial, wa, loss, delta)
        better = f_trial < f[act]
        gain = np.where(better, (f[act] - f_trial) / np.maximum(np.abs(f[act]), 1e-300), 0.0)
        idx = act[better]
        theta[idx], r[idx], f[idx] = trial[better], r_trial[better], f_trial[better]
        lam[act] = np.where(better, np.maximum(lam[act] / 3.0, 1e-12), lam[act] * 4.0)
        stalls[act] = np.where(better, np.where(gain > rtol, 0, stalls[act] + 1), stalls[act])
        done[act] = (stalls[act] >= 2) | (lam[act] > 1e10)
    return theta, f, done
