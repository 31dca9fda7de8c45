"""Held-out error over whole runs: the criterion by which the CMR and CPT fits choose between their forms."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from ladderlab.errors import LadderlabError
from ladderlab.scaling.engine.law import Data, Law, fit_law


def held_out_rmse(law: Law, x: Data, y: np.ndarray, groups: np.ndarray, fixed: Mapping[str, float] | None,
                  seed: int = 0, folds: int = 5, always: Any = None) -> float:
    """RMSE of predictions for runs left out of the fit: one fold per run up to `folds` runs, else `folds` folds.
    Rows where `always` is True (e.g. the pre-training runs CPT phases continue) are never left out nor scored."""
    scored = np.ones(len(y), bool) if always is None else ~np.asarray(always, bool)
    keys = np.unique(groups[scored])
    if len(keys) < 3:
        return float("nan")
    fold_of = dict(zip(keys, np.random.default_rng(seed).permutation(len(keys)) % min(folds, len(keys))))
    fold = np.array([fold_of[g] if s else -1 for g, s in zip(groups, scored)])
    err = np.empty_like(y)
    for k in np.unique(fold[scored]):
        out = fold == k
        try:
            fitted = fit_law(law, {c: v[~out] for c, v in x.items()}, y[~out], fixed, n_refine=4)
        except (LadderlabError, ValueError):
            return float("inf")
        err[out] = fitted.predict(**{c: v[out] for c, v in x.items()}) - y[out]
    return float(np.sqrt(np.mean(err[scored] ** 2)))
