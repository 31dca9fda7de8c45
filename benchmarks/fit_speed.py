"""Time ladderlab's 4,500-start Chinchilla fit against the usual way: a Python loop of L-BFGS-B over every start.

Both minimise the same objective (Huber, delta 1e-3, on log residuals of log L = LSE(a - alpha log N,
b - beta log D, e)) from the same grid with the same bounds; the loop uses an analytic gradient and keeps the best.
--smoke: every 100th start of the grid, for both sides.
Usage: python benchmarks/fit_speed.py [--json OUT] [--csv FILE with columns N, D, loss] [--every K] [--smoke]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import scipy
from scipy.optimize import minimize
from threadpoolctl import threadpool_limits

from ladderlab.scaling.engine.law import fit_law
from ladderlab.scaling.laws.chinchilla import Chinchilla
from ladderlab.scaling.tables.columns import read_columns

from common import emit, parse  # benchmarks/common.py

REPO = Path(__file__).resolve().parents[1]
GADRE = REPO / "scaling" / "bundled" / "gadre2024_overtraining.csv"
DELTA = 1e-3


def load(csv: str | None) -> tuple[str, np.ndarray, np.ndarray, np.ndarray]:
    """(description, N, D, loss): a user CSV with columns N, D, loss, or the bundled Gadre c4_original runs."""
    if csv:
        t = read_columns(csv, ["N", "D", "loss"])
        return Path(csv).name, t["N"], t["D"], t["loss"]
    t = read_columns(GADRE, ["params", "tokens", "loss_c4_val"], text=["dataset"])
    keep = t["dataset"] == "c4_original"
    desc = f"{GADRE.name}: dataset c4_original, N=params, D=tokens, loss=loss_c4_val"
    return desc, t["params"][keep], t["tokens"][keep], t["loss_c4_val"][keep]


def objective_and_grad(theta: np.ndarray, log_n: np.ndarray, log_d: np.ndarray, log_y: np.ndarray) -> tuple[float, np.ndarray]:
    """Single-start Huber objective and its analytic gradient: sum of clip(r, +-delta) * dr/dtheta, softmax weights."""
    a, b, e, alpha, beta = theta
    terms = np.stack([a - alpha * log_n, b - beta * log_d, np.full_like(log_n, e)])
    top = terms.max(axis=0)
    ex = np.exp(terms - top)
    total = ex.sum(axis=0)
    r = top + np.log(total) - log_y
    abs_r = np.abs(r)
    value = np.where(abs_r <= DELTA, 0.5 * r * r, DELTA * (abs_r - 0.5 * DELTA)).sum()
    gw = np.clip(r, -DELTA, DELTA) * ex / total
    grad = np.array([gw[0].sum(), gw[1].sum(), gw[2].sum(), -(gw[0] * log_n).sum(), -(gw[1] * log_d).sum()])
    return float(value), grad


def scipy_loop(starts: np.ndarray, bounds: list[tuple[float, float]], args: tuple) -> tuple[np.ndarray, float]:
    """The usual way: one L-BFGS-B run per start (default options), keep the lowest objective."""
    best = None
    for x0 in starts:
        res = minimize(objective_and_grad, x0, args=args, jac=True, method="L-BFGS-B", bounds=bounds)
        if best is None or res.fun < best.fun:
            best = res
    return best.x, float(best.fun)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--csv", help="CSV with columns N, D, loss (default: bundled Gadre et al. c4_original runs)")
    ap.add_argument("--every", type=int, default=1, help="use every K-th start of the grid (default: all)")
    args = parse(ap, smoke=dict(every=100))

    desc, n, d, y = load(args.csv)
    law = Chinchilla()
    starts = law.grid()[::args.every]
    lo, hi = law.bounds()

    # One BLAS thread for both: on a busy machine OpenBLAS threads slow each tiny L-BFGS-B step several-fold.
    with threadpool_limits(1):
        t0 = time.perf_counter()
        fitted = fit_law(law, {"N": n, "D": d}, y, starts=starts)
        ladderlab_s = time.perf_counter() - t0

        t0 = time.perf_counter()
        theta, value = scipy_loop(starts, list(zip(lo, hi)), (np.log(n), np.log(d), np.log(y)))
        scipy_s = time.perf_counter() - t0

    gap = abs(fitted.objective - value)
    out = {
        "data": desc,
        "n_points": int(len(y)),
        "n_starts": int(len(starts)),
        "baseline": f"scipy {scipy.__version__} L-BFGS-B loop",
        "ladderlab_s": ladderlab_s,
        "scipy_loop_s": scipy_s,
        "speedup": scipy_s / ladderlab_s,
        "ladderlab_objective": fitted.objective,
        "scipy_loop_objective": value,
        "objective_gap": gap,
        "same_optimum": bool(gap <= 1e-6),
        "params": fitted.params,
        "scipy_params": law.to_public(theta),
    }
    emit(out, args.json)


if __name__ == "__main__":
    main()
