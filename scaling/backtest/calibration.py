"""Calibrated 90% intervals: backtested errors as a function of how far a prediction extrapolates.

Every backtest split (fit on the sizes up to a cut, predict each larger run) leaves a residual |log(actual/pred)|
at an extrapolation distance d = max(0, ln(N/N_max_fit), ln(D/D_max_fit)), divided by the fit's own scale: its
leave-largest-size-out error (the same law fitted without its largest size, RMS log error on that size; at
least its in-sample RMSE), which carries how well the law's form extrapolates on this data. Binned by d, the 90%
quantile of those ratios (each family of runs weighted equally, so no one set outvotes the others; running
maximum over bins, so a farther prediction is never trusted more) times a new fit's scale is the half-width of
its calibrated interval in log space.
The residuals behind it ship in scaling/bundled/calibration_residuals.csv, so a user's machine applies it without
the anchors; leaving a family out rebuilds the table without it (how coverage is reported on sets not used to
calibrate). k, the farthest ratio past the fitted N or D that the backtests cover, is where warnings start.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ladderlab.scaling.tables.columns import read_columns, write_csv

BUNDLED = Path(__file__).resolve().parents[1] / "bundled" / "calibration_residuals.csv"
LEVEL = 0.9
EDGES = (0.0, 0.35, 0.7, 1.1, 1.6, 2.3, 3.5)  # bins of d = ln(ratio): 1x, 1.4x, 2x, 3x, 5x, 10x, 33x
MIN_SUPPORT = 20  # residuals a bin needs (from at least two families) before its ratio counts as backtested
COLUMNS = ("family", "method", "dist", "abs_log_err", "scale")
SCALE_FLOOR = 1e-3  # scales below this (0.1%) are noise-level and not trusted


@dataclass(frozen=True)
class Residuals:
    """Backtest residuals: the family of runs and method each came from, its distance and |log(actual/pred)|."""

    family: np.ndarray
    method: np.ndarray
    dist: np.ndarray
    abs_log_err: np.ndarray
    scale: np.ndarray

    @property
    def _cols(self) -> tuple[np.ndarray, ...]:
        return self.family, self.method, self.dist, self.abs_log_err, self.scale

    def without(self, families: Sequence[str]) -> Residuals:
        """The residuals of every other family (leave-one-set-out calibration)."""
        keep = ~np.isin(self.family, list(families))
        return Residuals(*(c[keep] for c in self._cols))

    def replacing(self, other: Residuals) -> Residuals:
        """These residuals with other's families replaced by other's rows (a fresh backtest of those families)."""
        rest = self.without(sorted(set(other.family.tolist())))
        return Residuals(*(np.concatenate([a, b]) for a, b in zip(rest._cols, other._cols)))

    def write(self, path: str | Path) -> None:
        write_csv(path, COLUMNS, ((f, m, *(f"{v:.6g}" for v in nums)) for f, m, *nums in zip(*self._cols)))


def read_residuals(path: str | Path = BUNDLED) -> Residuals:
    """The residuals a backtest wrote (`ladderlab backtest --write-calibration`); none when the file is absent."""
    if not Path(path).is_file():
        return Residuals(np.array([], object), np.array([], object), *(np.array([]) for _ in range(3)))
    cols = read_columns(path, ["dist", "abs_log_err", "scale"], text=["family", "method"])
    return Residuals(*(cols[c] for c in COLUMNS))


def weighted_quantile(values: np.ndarray, weights: np.ndarray, q: float) -> float:
    """The smallest value whose weighted cumulative share reaches q."""
    order = np.argsort(values)
    share = np.cumsum(weights[order]) / weights.sum()
    return float(values[order][min(np.searchsorted(share, q), len(values) - 1)])


@dataclass(frozen=True)
class Calibration:
    """Per distance bin: the 90% and 50% quantiles of |log error| / scale, the support; and k."""

    edges: tuple[float, ...]
    half_width: np.ndarray
    typical: np.ndarray
    support: np.ndarray
    families: tuple[str, ...]

    @property
    def k(self) -> float:
        """The farthest ratio past the largest fitted N or D whose bin the backtests support."""
        supported = np.flatnonzero(self.support >= MIN_SUPPORT)
        last = supported.max() if supported.size else 0
        return float(np.exp(self.edges[last + 1] if last + 1 < len(self.edges) else self.edges[-1]))

    def _bin(self, dist: np.ndarray) -> np.ndarray:
        return np.clip(np.searchsorted(self.edges, dist, side="right") - 1, 0, len(self.edges) - 1)

    def half_width_at(self, dist: np.ndarray | float, scale: np.ndarray | float) -> np.ndarray:
        """Half-width of the calibrated log interval at distance d for a fit of this scale; past k it grows in
        proportion to d."""
        d = np.maximum(np.asarray(dist, float), 0.0)
        width = self.half_width[self._bin(d)] * np.maximum(np.asarray(scale, float), SCALE_FLOOR)
        far = np.log(self.k)
        return np.where(d > far, width * d / max(far, 1e-9), width)

    def typical_error_at(self, dist: np.ndarray | float, scale: np.ndarray | float) -> np.ndarray:
        """The median backtested |relative error| at distance d for a fit of this scale."""
        d = np.maximum(np.asarray(dist, float), 0.0)
        return np.expm1(self.typical[self._bin(d)] * np.maximum(np.asarray(scale, float), SCALE_FLOOR))

    def interval(self, pred: np.ndarray, dist: np.ndarray, scale: np.ndarray | float, boot_lo: np.ndarray | None = None,
                 boot_hi: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Calibrated 90% interval: pred x exp(+-half-width), widened to the bootstrap interval where that is wider."""
        pred = np.asarray(pred, float)
        h = self.half_width_at(dist, scale)
        lo, hi = pred * np.exp(-h), pred * np.exp(h)
        if boot_lo is not None:
            lo, hi = np.fmin(lo, boot_lo), np.fmax(hi, boot_hi)
        return lo, hi


def calibrate(res: Residuals, edges: Sequence[float] = EDGES) -> Calibration:
    """Bin residuals by distance and take each bin's family-weighted 90% quantile of |log error| / scale (then a
    running maximum)."""
    edges = tuple(edges)
    bins = np.clip(np.searchsorted(edges, res.dist, side="right") - 1, 0, len(edges) - 1)
    half, typical, support = np.full(len(edges), np.nan), np.full(len(edges), np.nan), np.zeros(len(edges), int)
    for b in range(len(edges)):
        rows = bins == b
        fams = set(res.family[rows].tolist())
        if not rows.any():
            continue
        counts = {f: int(np.sum(res.family[rows] == f)) for f in fams}
        w = np.array([1.0 / counts[f] for f in res.family[rows]])
        z = res.abs_log_err[rows] / np.maximum(res.scale[rows], SCALE_FLOOR)
        half[b], typical[b] = weighted_quantile(z, w, LEVEL), weighted_quantile(z, w, 0.5)
        support[b] = rows.sum() if len(fams) >= 2 else 0
    if np.isnan(half).all():
        half[:], typical[:] = 0.0, 0.0
    half, typical = _fill(half), _fill(typical)
    return Calibration(edges, np.maximum.accumulate(half), np.maximum.accumulate(typical), support,
                       tuple(sorted(set(res.family.tolist()))))


def _fill(v: np.ndarray) -> np.ndarray:
    """Empty bins take the nearest filled bin below (or above, for leading ones)."""
    out = v.copy()
    first = np.flatnonzero(~np.isnan(out))[0]
    out[:first] = out[first]
    for i in range(first + 1, len(out)):
        if np.isnan(out[i]):
            out[i] = out[i - 1]
    return out


@lru_cache(maxsize=1)
def bundled_calibration() -> Calibration:
    """The calibration derived from the shipped backtest residuals."""
    return calibrate(read_residuals(BUNDLED))


def distance(fit_max: Mapping[str, float], at: Mapping[str, np.ndarray | float]) -> np.ndarray:
    """Extrapolation distance max(0, ln(x/x_max_fit)) over the size-like inputs both name (N, D, or a one-input
    law's S or C; not U, whose excess is the data-constrained law's own subject)."""
    parts = [np.log(np.atleast_1d(np.asarray(at[k], float)) / fit_max[k]) for k in fit_max if k in at and k != "U"]
    return np.maximum(np.max(np.stack(parts), axis=0), 0.0) if parts else np.zeros(1)
