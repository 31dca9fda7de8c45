"""Refine many fits of one law at once: weighted Levenberg-Marquardt, vectorised over fits.

Bootstrap replicates are the same data under different row weights (resample counts), so B refits from a good
start are one array computation: forward-difference Jacobians of all B fits in one `predict_batch` call (or the
law's analytic ones), Huber handled by iteratively reweighted least squares, bounds by freezing parameters pushed
against them. Fits may have their own targets too (the cross-validation folds of many loss columns in one batch).
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
    targets_BxN: np.ndarray | None = None,
    jacobian: Callable[[np.ndarray], np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Minimise each fit's weighted objective from its start; returns (theta_BxP, objective_B, converged_B).

    targets_BxN: each fit's own targets, subtracted from residuals(theta) (then the model's outputs), so fits of
    different columns share one batch; jacobian(theta_SxP) -> S x P x N: the outputs' analytic derivatives in place
    of forward differences."""
    theta = np.clip(np.array(theta_BxP, float), lo, hi)
    n_fit, n_par = theta.shape
    target = np.zeros((n_fit, 1)) if targets_BxN is None else np.asarray(targets_BxN, float)
    lam = np.full(n_fit, 1e-3)
    with np.errstate(all="ignore"):
        r = residuals(theta) - target
    f = weighted_objective(r, w_BxN, loss, delta)
    done = ~np.isfinite(f)
    stalls = np.zeros(n_fit, int)
    eye = np.eye(n_par)
    for _ in range(max_iter):
        act = np.flatnonzero(~done)
        if act.size == 0:
            break
        th, ra, wa, ta = theta[act], r[act], w_BxN[act], target[act]
        with np.errstate(all="ignore"):
            jac = _forward_jacobian(residuals, th, ra + ta, hi) if jacobian is None else jacobian(th)  # B x P x N
        jac[~np.isfinite(jac)] = 0.0
        u = wa if loss != "huber" else wa * np.where(np.abs(ra) <= delta, 1.0, delta / np.maximum(np.abs(ra), 1e-300))
        ju = jac * u[:, None, :]
        grad = np.matmul(ju, ra[:, :, None])[:, :, 0]
        hess = np.matmul(ju, jac.transpose(0, 2, 1))
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
            r_trial = residuals(trial) - ta
        f_trial = weighted_objective(r_trial, wa, loss, delta)
        better = f_trial < f[act]
        gain = np.where(better, (f[act] - f_trial) / np.maximum(np.abs(f[act]), 1e-300), 0.0)
        idx = act[better]
        theta[idx], r[idx], f[idx] = trial[better], r_trial[better], f_trial[better]
        lam[act] = np.where(better, np.maximum(lam[act] / 3.0, 1e-12), lam[act] * 4.0)
        stalls[act] = np.where(better, np.where(gain > rtol, 0, stalls[act] + 1), stalls[act])
        done[act] = (stalls[act] >= 2) | (lam[act] > 1e10)
    return theta, f, done


def _forward_jacobian(outputs: Residuals, th_BxP: np.ndarray, out_BxN: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Forward-difference derivatives of outputs at th (whose outputs are out): B x P x N."""
    n_fit, n_par = th_BxP.shape
    h = 1e-7 * np.maximum(1.0, np.abs(th_BxP))
    h = np.where(th_BxP + h > hi, -h, h)  # step inward at an upper bound
    shifted = np.repeat(th_BxP[:, None, :], n_par, axis=1)
    shifted[:, np.arange(n_par), np.arange(n_par)] += h
    return (outputs(shifted.reshape(-1, n_par)).reshape(n_fit, n_par, -1) - out_BxN[:, None, :]) / h[:, :, None]
