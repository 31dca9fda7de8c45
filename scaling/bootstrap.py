"""Bootstrap over runs: resample rows (or groups of rows, e.g. checkpoints of one run) and refit, in parallel.

Each replicate's resample comes from its own child of one SeedSequence, so the replicates are the same whatever
the number of worker processes.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from typing import Mapping

import numpy as np

from ladderlab.errors import LadderlabError
from ladderlab.scaling.law import Data, FittedLaw, Law, fit_law


def resample_indices(n_rows: int, groups: np.ndarray | None, seed: int, n: int) -> list[np.ndarray]:
    """Row indices of n bootstrap resamples; with groups, whole groups are drawn with replacement."""
    out = []
    keys, inverse = (None, None) if groups is None else np.unique(groups, return_inverse=True)
    for child in np.random.SeedSequence(seed).spawn(n):
        rng = np.random.default_rng(child)
        if keys is None:
            out.append(rng.integers(0, n_rows, n_rows))
        else:
            drawn = rng.integers(0, len(keys), len(keys))
            out.append(np.concatenate([np.flatnonzero(inverse == g) for g in drawn]))
    return out


def _refit(law: Law, x: Data, y: np.ndarray, idx: np.ndarray, fixed: Mapping[str, float], starts: np.ndarray) -> np.ndarray:
    try:
        return fit_law(law, {k: v[idx] for k, v in x.items()}, y[idx], fixed, starts=starts, n_refine=3).theta
    except (LadderlabError, ValueError):
        return np.full(starts.shape[1], np.nan)


def _refit_many(args: tuple) -> list[np.ndarray]:
    law, x, y, indices, fixed, starts = args
    return [_refit(law, x, y, idx, fixed, starts) for idx in indices]


def bootstrap(
    fitted: FittedLaw,
    x: Data,
    y: np.ndarray,
    n: int = 200,
    seed: int = 0,
    groups: np.ndarray | None = None,
    fixed: Mapping[str, float] | None = None,
    workers: int | None = None,
) -> FittedLaw:
    """Attach n bootstrap replicates to `fitted` (refits start from its optimum and the law's grid)."""
    law, y = fitted.law, np.asarray(y, float)
    x = {k: np.asarray(v, float) for k, v in x.items()}
    indices = resample_indices(len(y), None if groups is None else np.asarray(groups), seed, n)
    starts = np.vstack([fitted.theta[None, :], law.grid()])
    workers = min(workers or os.cpu_count() or 1, max(1, n // 25))
    chunks = [indices[i::workers] for i in range(workers)]
    jobs = [(law, x, y, c, dict(fixed or {}), starts) for c in chunks]
    if workers == 1 or "jax" in sys.modules:  # never fork a process that runs JAX's threads
        results = [_refit_many(jobs[0])]
    else:
        ctx = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
            results = list(pool.map(_refit_many, jobs))
    boot = np.empty((n, len(fitted.theta)))
    for w, res in enumerate(results):
        boot[w::workers] = res
    failed = int(np.isnan(boot).any(axis=1).sum())
    if failed > 0.05 * n:
        fitted.warnings.append(f"bootstrap: {failed} of {n} refits failed; intervals use the rest")
    fitted.boot_BxP, fitted.seed = boot, seed
    return fitted
