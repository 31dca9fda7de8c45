"""Calibrated 90% intervals: backtested errors as a function of how far a prediction extrapolates.

Every backtest split (fit on the sizes up to a cut, predict each larger run) leaves a residual |log(actual/pred)|
at an extrapolation distance d = max(0, ln(N/N_max_fit), ln(D/D_max_fit)), divided by the fit's own scale: its
leave-largest-size-out errors (the same law fitted without its largest size, log errors on that size) and its
in-sample log residuals, each as a robust RMS (1.4826 x median absolute value: a few misfit runs do not set a whole
fit's scale) and added in quadrature, which carry how well the law's form extrapolates on this data and how noisy
the runs are. A linear quantile regression of the log of those ratios on d (each family of runs weighted equally, so
no one set outvotes the others; slope at least 0, so a farther prediction is never trusted more) gives the 90% ratio
at any d; times a new fit's scale it is the half-width of its calibrated interval in log space (widened to the
bootstrap interval where that is wider). The residuals behind it ship in scaling/bundled/calibration_residuals.csv,
so a user's machine applies it without the anchors; leaving a family out refits it without them (how coverage is
reported on sets not used to calibrate). k, the farthest ratio past the fitted N or D that at least two families'
backtests cover, is where warnings start and past which the half-width grows in proportion to d.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from scipy import sparse
from scipy.optimize import linprog

from ladderlab.errors import LadderlabError

from ladderlab.scaling.tables.columns import read_columns, write_csv

BUNDLED = Path(__file__).resolve().parents[1] / "bundled" / "calibration_residuals.csv"
LEVEL = 0.9
EDGES = (0.0, 0.35, 0.7, 1.1, 1.6, 2.3, 3.5)  # bins of d = ln(ratio) for k: 1x, 1.4x, 2x, 3x, 5x, 10x, 33x
MIN_SUPPORT = 20  # residuals a bin needs (from at least two families) before its distance counts as backtested
COLUMNS = ("family", "method", "split", "dist", "log_err", "scale", "boot_lo", "boot_hi")
TEXT = 3  # the first COLUMNS are text
SCALE_FLOOR = 1e-3  # scales below this (0.1%) are noise-level and not trusted


@dataclass(frozen=True)
class Residuals:
    """Backtest residuals: the family of runs and method each came from, its reported split ("" for the other
    cuts), distance, log(actual/pred), the fit's scale, and log(bootstrap bound / pred) (0: no bootstrap)."""

    family: np.ndarray
    method: np.ndarray
    split: np.ndarray
    dist: np.ndarray
    log_err: np.ndarray
    scale: np.ndarray
    boot_lo: np.ndarray
    boot_hi: np.ndarray

    @property
    def abs_log_err(self) -> np.ndarray:
        return np.abs(self.log_err)

    @property
    def _cols(self) -> tuple[np.ndarray, ...]:
        return tuple(getattr(self, c) for c in COLUMNS)

    def without(self, families: Sequence[str]) -> Residuals:
        """The residuals of every other family (leave-one-set-out calibration)."""
        keep = ~np.isin(self.family, list(families))
        return Residuals(*(c[keep] for c in self._cols))

    def replacing(self, other: Residuals) -> Residuals:
        """These residuals with other's families replaced by other's rows (a fresh backtest of those families)."""
        rest = self.without(sorted(set(other.family.tolist())))
        return Residuals(*(np.concatenate([a, b]) for a, b in zip(rest._cols, other._cols)))

    def write(self, path: str | Path) -> None:
        write_csv(path, COLUMNS, ((*row[:TEXT], *(f"{v:.5g}" for v in row[TEXT:])) for row in zip(*self._cols)))


def read_residuals(path: str | Path = BUNDLED) -> Residuals:
    """The residuals a backtest wrote (`ladderlab backtest --write-calibration`); none when the file is absent."""
    if not Path(path).is_file():
        return Residuals(*(np.array([], object) for _ in range(TEXT)), *(np.array([]) for _ in COLUMNS[TEXT:]))
    cols = read_columns(path, list(COLUMNS[TEXT:]), text=list(COLUMNS[:TEXT]))
    return Residuals(*(cols[c] for c in COLUMNS))


def split_coverage(res: Residuals) -> dict[tuple[str, str], tuple[float, float]]:
    """Each reported (split, method)'s coverage and mean width (in ratio to the actual) of its calibrated 90%
    intervals, the calibration refitted without the split's family: the backtest's `law/calibrated` row, from
    the residuals alone."""
    out = {}
    for split, method in sorted(set(zip(res.split.tolist(), res.method.tolist()))):
        if not split:
            continue
        rows = (res.split == split) & (res.method == method)
        cal = calibrate(res.without([res.family[rows][0]]))
        lo, hi = cal.interval(np.ones(rows.sum()), res.dist[rows], res.scale[rows], np.exp(res.boot_lo[rows]),
                              np.exp(res.boot_hi[rows]))
        actual = np.exp(res.log_err[rows])
        out[split, method] = (float(np.mean((actual >= lo) & (actual <= hi))), float(np.mean((hi - lo) / actual)))
    return out


def quantile_line(z: np.ndarray, dist: np.ndarray, weights: np.ndarray, q: float) -> tuple[float, float]:
    """(a, b) of the weighted linear q-quantile regression log z = a + b d with b >= 0 (pinball loss, a linear
    program); zeros count at a tiny ratio."""
    n = len(z)
    target = np.log(np.maximum(z, 1e-9))
    cost = np.concatenate([[0.0, 0.0], q * weights, (1 - q) * weights])
    eq = sparse.hstack([sparse.csr_matrix(np.column_stack([np.ones(n), dist])), sparse.eye(n), -sparse.eye(n)])
    got = linprog(cost, A_eq=eq, b_eq=target, bounds=[(None, None), (0, None)] + [(0, None)] * (2 * n),
                  method="highs")
    if not got.success:
        raise LadderlabError(f"calibration: quantile regression on {n} residuals failed ({got.message})")
    return float(got.x[0]), float(got.x[1])


@dataclass(frozen=True)
class Calibration:
    """log of the 90% and 50% quantiles of |log error| / scale, each a + b d; residuals per EDGES bin counted where
    at least two families reach it (for k); the families it was derived from."""

    half_width: tuple[float, float]
    typical: tuple[float, float]
    support: np.ndarray
    families: tuple[str, ...]
    edges: tuple[float, ...] = EDGES

    @property
    def k(self) -> float:
        """The farthest ratio past the largest fitted N or D whose bin the backtests support."""
        supported = np.flatnonzero(self.support >= MIN_SUPPORT)
        last = supported.max() if supported.size else 0
        return float(np.exp(self.edges[last + 1] if last + 1 < len(self.edges) else self.edges[-1]))

    def _ratio(self, line: tuple[float, float], dist: np.ndarray | float) -> np.ndarray:
        """The line's ratio at d, held at its value at k beyond k and grown there in proportion to d."""
        d = np.maximum(np.asarray(dist, float), 0.0)
        far = np.log(self.k)
        ratio = np.exp(line[0] + line[1] * np.minimum(d, far))
        return np.where(d > far, ratio * d / max(far, 1e-9), ratio)

    def half_width_at(self, dist: np.ndarray | float, scale: np.ndarray | float) -> np.ndarray:
        """Half-width of the calibrated log interval at distance d for a fit of this scale."""
        return self._ratio(self.half_width, dist) * np.maximum(np.asarray(scale, float), SCALE_FLOOR)

    def typical_error_at(self, dist: np.ndarray | float, scale: np.ndarray | float) -> np.ndarray:
        """The median backtested |relative error| at distance d for a fit of this scale."""
        return np.expm1(self._ratio(self.typical, dist) * np.maximum(np.asarray(scale, float), SCALE_FLOOR))

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
    """The 90% and 50% quantile lines of log(|log error| / scale) against distance, each family weighted equally,
    and each distance bin's support."""
    edges = tuple(edges)
    families = tuple(sorted(set(res.family.tolist())))
    if not families:
        return Calibration((-np.inf, 0.0), (-np.inf, 0.0), np.zeros(len(edges), int), families, edges)
    counts = {f: int(np.sum(res.family == f)) for f in families}
    w = np.array([1.0 / counts[f] for f in res.family])
    z = res.abs_log_err / np.maximum(res.scale, SCALE_FLOOR)
    bins = np.clip(np.searchsorted(edges, res.dist, side="right") - 1, 0, len(edges) - 1)
    support = np.array([np.sum(bins == b) if len(set(res.family[bins == b].tolist())) >= 2 else 0
                        for b in range(len(edges))])
    return Calibration(quantile_line(z, res.dist, w, LEVEL), quantile_line(z, res.dist, w, 0.5), support, families,
                       edges)


@lru_cache(maxsize=1)
def bundled_calibration() -> Calibration:
    """The calibration derived from the shipped backtest residuals."""
    return calibrate(read_residuals(BUNDLED))


def distance(fit_max: Mapping[str, float], at: Mapping[str, np.ndarray | float]) -> np.ndarray:
    """Extrapolation distance max(0, ln(x/x_max_fit)) over the size-like inputs both name (N, D, or a one-input
    law's S or C; not U, whose excess is the data-constrained law's own subject)."""
    parts = [np.log(np.atleast_1d(np.asarray(at[k], float)) / fit_max[k]) for k in fit_max if k in at and k != "U"]
    return np.maximum(np.max(np.stack(parts), axis=0), 0.0) if parts else np.zeros(1)
