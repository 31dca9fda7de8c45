"""Bootstrap over runs: resample rows (or groups of rows, e.g. checkpoints of one run) and refit, in parallel.

Each replicate's resample comes from its own child of one SeedSequence, so the replicates are the same whatever
the number of worker processes.
"""

from __future__ import annotations

import os
from typing import Mapping

import numpy as np

from ladderlab.errors import LadderlabError
from ladderlab.scaling.engine.batch_fit import refine_batch
from ladderlab.scaling.engine.law import Data, FittedLaw, Law, fit_law
from ladderlab.scaling.engine.parallel import map_jobs

BATCH_ELEMENTS = 1 << 22  # replicates x free parameters x rows in one batched refinement: 32 MB per array


def resample_indices(n_rows: int, groups: np.ndarray | None, seed: int, n: int,
                     strata: np.ndarray | None = None) -> list[np.ndarray]:
    """Row indices of n bootstrap resamples; with groups, whole groups are drawn with replacement; with strata (each
    row's stratum, constant within a group), as many groups from each stratum as it has, so every stratum (e.g.
    every mixture of a designed sweep) is in every resample."""
    out = []
    keys, inverse = (None, None) if groups is None else np.unique(groups, return_inverse=True)
    members = None
    if keys is not None and strata is not None:
        group_stratum = np.asarray(strata)[[np.flatnonzero(inverse == g)[0] for g in range(len(keys))]]
        members = [np.flatnonzero(group_stratum == s) for s in np.unique(group_stratum)]
    for child in np.random.SeedSequence(seed).spawn(n):
        rng = np.random.default_rng(child)
        if keys is None:
            out.append(rng.integers(0, n_rows, n_rows))
            continue
        if members is None:
            drawn = rng.integers(0, len(keys), len(keys))
        else:
            drawn = np.concatenate([m[rng.integers(0, len(m), len(m))] for m in members])
        out.append(np.concatenate([np.flatnonzero(inverse == g) for g in drawn]))
    return out


def _refit(
    law: Law, x: Data, y: np.ndarray, idx: np.ndarray, fixed: Mapping[str, float], starts: np.ndarray, n_refine: int
) -> np.ndarray:
    try:
        return fit_law(law, {k: v[idx] for k, v in x.items()}, y[idx], fixed, starts=starts, n_refine=n_refine).theta
    except (LadderlabError, ValueError):
        return np.full(starts.shape[1], np.nan)


def _refit_many(args: tuple) -> list[np.ndarray]:
    law, x, y, indices, fixed, starts, n_refine = args
    return [_refit(law, x, y, idx, fixed, starts, n_refine) for idx in indices]


def bootstrap(
    fitted: FittedLaw,
    x: Data,
    y: np.ndarray,
    n: int = 200,
    seed: int = 0,
    groups: np.ndarray | None = None,
    fixed: Mapping[str, float] | None = None,
    workers: int | None = None,
    warm: bool = False,
    always: np.ndarray | None = None,
    strata: np.ndarray | None = None,
) -> FittedLaw:
    """Attach n bootstrap replicates to `fitted`.

    Refits start from its optimum and the law's grid (3 refined by L-BFGS-B, in parallel processes), or with
    warm=True from its optimum alone, by batched Levenberg-Marquardt over as many replicates at once as
    BATCH_ELEMENTS allows (for many replicates of a well-posed fit). Rows in `always` (e.g. an anchor point) join
    every resample; `strata` (per row) resamples groups within each stratum (`resample_indices`).
    """
    y = np.asarray(y, float)
    x = {k: np.asarray(v, float) for k, v in x.items()}
    fixed = dict(fixed or {})
    pool = np.arange(len(y)) if always is None else np.setdiff1d(np.arange(len(y)), always)
    groups = None if groups is None else np.asarray(groups)[pool]
    strata = None if strata is None else np.asarray(strata)[pool]
    indices = [np.concatenate([pool[i], [] if always is None else always]).astype(int)
               for i in resample_indices(len(pool), groups, seed, n, strata)]
    boot = _warm_refits(fitted, x, y, indices, fixed) if warm else _cold_refits(fitted, x, y, indices, fixed, workers)
    failed = int(np.isnan(boot).any(axis=1).sum())
    if failed > 0.05 * n:
        fitted.warnings.append(f"bootstrap: {failed} of {n} refits failed; intervals use the rest")
    fitted.boot_BxP, fitted.seed = boot, seed
    return fitted


def _cold_refits(fitted: FittedLaw, x: Data, y: np.ndarray, indices: list, fixed: dict, workers: int | None) -> np.ndarray:
    law, n = fitted.law, len(indices)
    starts = np.vstack([fitted.theta[None, :], law.grid()])
    workers = min(workers or os.cpu_count() or 1, max(1, n // 25))
    jobs = [(law, x, y, indices[i::workers], fixed, starts, 3) for i in range(workers)]
    results = map_jobs(_refit_many, jobs, workers)
    boot = np.empty((n, len(fitted.theta)))
    for w, res in enumerate(results):
        boot[w::workers] = res
    return boot


def _warm_refits(fitted: FittedLaw, x: Data, y: np.ndarray, indices: list, fixed: dict) -> np.ndarray:
    law = fitted.law
    free = np.array([p.name not in fixed for p in law.params])
    lo, hi = law.bounds()
    target = np.log(y) if law.residual == "log" else y

    def residuals(theta_SxF: np.ndarray) -> np.ndarray:
        full = np.repeat(fitted.theta[None, :], len(theta_SxF), axis=0)
        full[:, free] = theta_SxF
        pred = law.predict_batch(full, x)
        return (np.log(pred) if law.residual == "log" else pred) - target

    boot = np.repeat(fitted.theta[None, :], len(indices), axis=0)
    stuck = 0
    per_chunk = max(1, BATCH_ELEMENTS // (int(free.sum()) * len(y)))
    for c in range(0, len(indices), per_chunk):  # replicates are independent: chunks bound the Jacobian's memory
        w_BxN = np.stack([np.bincount(i, minlength=len(y)) for i in indices[c : c + per_chunk]]).astype(float)
        start = np.repeat(fitted.theta[None, free], len(w_BxN), axis=0)
        theta, value, converged = refine_batch(residuals, start, w_BxN, lo[free], hi[free], law.loss, law.delta)
        boot[c : c + len(w_BxN), free] = theta
        boot[c : c + len(w_BxN)][~np.isfinite(value)] = np.nan
        stuck += int((~converged).sum())
    if stuck:
        fitted.warnings.append(f"bootstrap: {stuck} of {len(indices)} refits hit the iteration limit")
    return boot
