"""Speed-up of growth at equal loss: FLOPs_scratch / FLOPs_grown - 1 (Du et al. 2024, App. B.2), from loss curves
(FLOPs, loss) of a scratch run and grown runs, the grown ones counting the small model's FLOPs. Pure numpy.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ladderlab.errors import LadderlabError


def flops_to_reach(flops: np.ndarray, loss: np.ndarray, level: float) -> float:
    """FLOPs at which the curve first reaches `level` (linear in log FLOPs between points); NaN if it never does."""
    flops, loss = np.asarray(flops, float), np.asarray(loss, float)
    order = np.argsort(flops)
    flops, best = flops[order], np.minimum.accumulate(loss[order])  # the best loss so far
    hit = np.flatnonzero(best <= level)
    if not len(hit):
        return float("nan")
    i = hit[0]
    if i == 0 or best[i] == best[i - 1]:
        return float(flops[i])
    t = (best[i - 1] - level) / (best[i - 1] - best[i])
    return float(np.exp(np.log(flops[i - 1]) + t * (np.log(flops[i]) - np.log(flops[i - 1]))))


def speedup(scratch: tuple[np.ndarray, np.ndarray], grown: tuple[np.ndarray, np.ndarray]) -> dict[str, float]:
    """Speed-up at the lowest loss both runs reach (the worse of the two final losses).

    A grown run that ends above the scratch run's final loss gets a negative speed-up: scratch reached its loss
    with fewer FLOPs.
    """
    (fs, ls), (fg, lg) = scratch, grown
    if len(ls) < 2 or len(lg) < 2:
        raise LadderlabError("speed-up needs at least two loss points per curve")
    level = max(float(np.min(ls)), float(np.min(lg)))
    at_scratch, at_grown = flops_to_reach(fs, ls, level), flops_to_reach(fg, lg, level)
    return {"loss": level, "flops_scratch": at_scratch, "flops_grown": at_grown,
            "speedup": at_scratch / at_grown - 1.0}


def comparison_rows(curves: dict[str, tuple[np.ndarray, np.ndarray]], scratch: str = "scratch") -> list[dict[str, Any]]:
    """One row per run of an operator comparison: final loss, FLOPs used and speed-up against `scratch`."""
    if scratch not in curves:
        raise LadderlabError(f"operator comparison: no {scratch!r} curve among {', '.join(curves)}")
    rows = []
    for name, (flops, loss) in curves.items():
        row = {"run": name, "final_loss": float(np.asarray(loss)[-1]), "flops": float(np.max(flops))}
        rows.append({**row, **speedup(curves[scratch], (flops, loss))})
    return rows
