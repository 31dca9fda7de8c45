"""Nested mixture pipeline for a large run (Ye et al.): step law per (mixture, size) to the target steps, size law
per mixture to the target size, mixing law on those extrapolated losses, then the optimal mixture there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from ladderlab.errors import LadderlabError
from ladderlab.scaling.engine.law import fit_law
from ladderlab.scaling.laws.power import PowerLaw
from ladderlab.scaling.mixing.model import MixingModel, fit_mixing_model
from ladderlab.scaling.mixing.optimize import MixturePrediction, optimize_mixture
from ladderlab.scaling.mixing.table import check_proportions


@dataclass
class NestedResult:
    """Losses extrapolated to (target_steps, target_size) per mixture, the mixing model on them and the optimum."""

    ids: list[str]
    extrapolated: dict[str, np.ndarray]
    mixing: MixingModel
    optimum: MixturePrediction


def _extrapolate(kind: str, v: np.ndarray, y: np.ndarray, at: float, what: str) -> float:
    if len(np.unique(v)) < 4:
        raise LadderlabError(f"{what}: {len(np.unique(v))} distinct {kind} values; the {kind} law needs at least 4")
    var = "S" if kind == "step" else "N"
    return float(fit_law(PowerLaw(kind), {var: v}, y, n_refine=2).predict(**{var: at})[0])


def nested_mixture(
    proportions: Mapping[str, Mapping[str, float]],
    run_mixture: np.ndarray,
    run_size: np.ndarray,
    run_steps: np.ndarray,
    run_losses: Mapping[str, np.ndarray],
    target_steps: float,
    target_size: float,
    model: str = "auto",
    **optimize: Any,
) -> NestedResult:
    """proportions: mixture id -> {domain: share}; run_*: one row per checkpoint (mixture id, N, step, losses)."""
    ids = list(proportions)
    run_mixture = np.asarray(run_mixture).astype(str)
    unknown = sorted(set(run_mixture) - set(map(str, ids)))
    if unknown:
        raise LadderlabError(f"runs use mixture id(s) {', '.join(unknown[:3])} with no proportions")
    extrapolated = {c: np.empty(len(ids)) for c in run_losses}
    for i, mix in enumerate(ids):
        rows = run_mixture == str(mix)
        sizes = np.unique(run_size[rows])
        for col, loss in run_losses.items():
            at_steps = [_extrapolate("step", run_steps[rows & (run_size == n)], loss[rows & (run_size == n)], target_steps,
                                     f"mixture {mix}, size {n:g}") for n in sizes]
            extrapolated[col][i] = _extrapolate("size", sizes, np.array(at_steps), target_size, f"mixture {mix}")
    domains = sorted({d for shares in proportions.values() for d in shares})
    props = {d: np.array([proportions[mix].get(d, 0.0) for mix in ids]) for d in domains}
    check_proportions(props, "mixture proportions")
    mixing = fit_mixing_model(props, extrapolated, model)
    return NestedResult(ids, extrapolated, mixing, optimize_mixture(mixing, **optimize))
