"""A law's contract with the fitter, and the fitted law: predictions, intervals, checks and JSON.

Each law declares its inputs, its parameters (public name, whether fitted in log space, bounds) and a prediction
vectorised over parameter sets. `fit_law` turns a table into a `FittedLaw` and never hides a doubtful fit:
bad input is an error, and a parameter at its bound or a non-converged fit is a warning kept with the result.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping

import numpy as np

from ladderlab.errors import LadderlabError
from ladderlab.paths import write_atomic
from ladderlab.scaling.engine.minimize import MAX_ELEMENTS, blocked_objective, minimize_multistart, minimize_subsampled

Data = Mapping[str, np.ndarray]
SCREEN_ROWS = 2048  # larger tables screen and refine the starts on this many rows, then polish on all of them


@dataclass(frozen=True)
class Param:
    """One fitted parameter: public name, fitted as log(value) or as the value, bounds and starting grid."""

    name: str
    log: bool
    lo: float
    hi: float
    grid: tuple[float, ...]


class Law:
    """Base class: subclasses set name/inputs/params and implement `predict_batch`."""

    name: ClassVar[str]
    inputs: ClassVar[tuple[str, ...]]
    params: ClassVar[tuple[Param, ...]]
    positive: ClassVar[tuple[str, ...] | None] = None  # inputs that must be > 0 (None: all of them)
    residual: ClassVar[str] = "log"  # "log": residuals of log(pred) - log(y); "raw": pred - y
    loss: ClassVar[str] = "huber"  # "huber" (delta below) or "l2" (least squares)
    delta: ClassVar[float] = 1e-3

    def predict_batch(self, theta_SxP: np.ndarray, x: Data) -> np.ndarray:
        """Predictions for S internal parameter vectors at the N input points: S x N; each point's prediction
        depends on that point's inputs alone (the fitter evaluates blocks of rows)."""
        raise NotImplementedError

    def spec(self) -> dict[str, Any]:
        """Constructor arguments, so the law can be rebuilt from JSON."""
        return {}

    # --- internal <-> public parameters -------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        return [p.name for p in self.params]

    def to_public(self, theta_P: np.ndarray) -> dict[str, float]:
        return {p.name: float(np.exp(t) if p.log else t) for p, t in zip(self.params, theta_P)}

    def to_internal(self, public: Mapping[str, float]) -> np.ndarray:
        return np.array([np.log(public[p.name]) if p.log else public[p.name] for p in self.params], float)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return np.array([p.lo for p in self.params]), np.array([p.hi for p in self.params])

    def grid(self) -> np.ndarray:
        """The full factorial grid of starting points, in internal coordinates: S x P."""
        return np.array(list(itertools.product(*[p.grid for p in self.params])), float)


@dataclass
class FittedLaw:
    """A law with fitted parameters, fit diagnostics, warnings and (optionally) bootstrap replicates."""

    law: Law
    theta: np.ndarray
    objective: float
    n_points: int
    rmse_log: float
    mape: float
    warnings: list[str] = field(default_factory=list)
    boot_BxP: np.ndarray | None = None
    seed: int | None = None
    fixed: tuple[str, ...] = ()

    @property
    def params(self) -> dict[str, float]:
        return self.law.to_public(self.theta)

    def predict(self, **x: Any) -> np.ndarray:
        """Point prediction at the given inputs (arrays or scalars)."""
        arrays = _inputs(self.law, x)
        return self.law.predict_batch(self.theta[None, :], arrays)[0]

    def predict_samples(self, **x: Any) -> np.ndarray:
        """Predictions of every bootstrap replicate: B x N."""
        if self.boot_BxP is None:
            raise LadderlabError(f"{self.law.name}: no bootstrap replicates; fit with bootstrap > 0")
        return self.law.predict_batch(self.boot_BxP, _inputs(self.law, x))

    def interval(self, level: float = 0.9, **x: Any) -> tuple[np.ndarray, np.ndarray]:
        """Percentile bootstrap interval of the prediction at the given inputs."""
        return percentile_interval(self.predict_samples(**x), level)

    def param_intervals(self, level: float = 0.9) -> dict[str, tuple[float, float]]:
        """Percentile bootstrap interval of every public parameter."""
        if self.boot_BxP is None:
            return {}
        public = np.array([[v for v in self.law.to_public(t).values()] for t in self.boot_BxP])
        lo, hi = percentile_interval(public, level)
        return {n: (float(a), float(b)) for n, a, b in zip(self.law.names, lo, hi) if n not in self.fixed}

    def objective_at(self, theta_P: np.ndarray, x: Data, y: np.ndarray) -> float:
        """The fit's objective (same residuals and loss) at another internal parameter vector."""
        law, arrays = self.law, _inputs(self.law, x)
        y_N = np.asarray(y, float)
        objective = blocked_objective(law.predict_batch, arrays, y_N, law.residual, law.loss, law.delta)
        return float(objective(np.atleast_2d(theta_P))[0])

    def to_json(self) -> dict[str, Any]:
        out = {
            "law": self.law.name,
            "spec": self.law.spec(),
            "params": self.params,
            "fixed": list(self.fixed),
            "objective": self.objective,
            "n_points": self.n_points,
            "rmse_log": self.rmse_log,
            "mape": self.mape,
            "warnings": list(self.warnings),
        }
        if self.boot_BxP is not None:
            out["bootstrap"] = {
                "seed": self.seed,
                "intervals_90": {k: list(v) for k, v in self.param_intervals(0.9).items()},
                "samples": [self.law.to_public(t) for t in self.boot_BxP],
            }
        return out

    @classmethod
    def from_json(cls, law: Law, doc: Mapping[str, Any]) -> FittedLaw:
        """The fitted `law` that `to_json` wrote as `doc` (parameters, diagnostics, bootstrap replicates)."""
        boot = doc.get("bootstrap")
        samples = None if boot is None else np.array([law.to_internal(s) for s in boot["samples"]])
        return cls(law, law.to_internal(doc["params"]), doc["objective"], doc["n_points"], doc["rmse_log"], doc["mape"],
                   list(doc.get("warnings", [])), samples, None if boot is None else boot.get("seed"),
                   tuple(doc.get("fixed", ())))

    def save(self, path: str) -> None:
        """Write the law's JSON (`load_fitted` reads it back), atomically, to a local path or an object-store URL."""
        write_atomic(path, json.dumps(self.to_json(), indent=2))


def percentile_interval(samples_BxN: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Equal-tailed percentile interval over the first axis, ignoring non-finite replicates."""
    tail = 100 * (1 - level) / 2
    s = np.where(np.isfinite(samples_BxN), samples_BxN, np.nan)
    return np.nanpercentile(s, tail, axis=0), np.nanpercentile(s, 100 - tail, axis=0)


def _inputs(law: Law, x: Mapping[str, Any]) -> dict[str, np.ndarray]:
    missing = [k for k in law.inputs if k not in x]
    if missing:
        raise LadderlabError(f"{law.name}: missing input(s) {', '.join(missing)} (needs {', '.join(law.inputs)})")
    arrays = np.broadcast_arrays(*[np.atleast_1d(np.asarray(x[k], float)) for k in law.inputs])
    return dict(zip(law.inputs, arrays))


def check_data(law: Law, x: Data, y_N: np.ndarray, n_free: int) -> None:
    """Reject inputs a fit cannot use honestly: non-finite or non-positive values, too few points."""
    for name, arr in [*x.items(), ("observed", y_N)]:
        bad = np.flatnonzero(~np.isfinite(arr))
        if bad.size:
            raise LadderlabError(f"{law.name}: non-finite {name} at row {bad[0]} (value {arr[bad[0]]})")
    for name in law.inputs if law.positive is None else law.positive:
        bad = np.flatnonzero(x[name] <= 0)
        if bad.size:
            raise LadderlabError(f"{law.name}: non-positive {name} {x[name][bad[0]]} at row {bad[0]}")
    if law.residual == "log":
        bad = np.flatnonzero(y_N <= 0)
        if bad.size:
            raise LadderlabError(f"{law.name}: non-positive observed value {y_N[bad[0]]} at row {bad[0]}")
    if len(y_N) <= n_free:
        raise LadderlabError(
            f"{law.name}: too few points: {len(y_N)} rows for {n_free} free parameters (need at least {n_free + 1})"
        )


def fit_law(
    law: Law,
    x: Data,
    y: np.ndarray,
    fixed: Mapping[str, float] | None = None,
    starts: np.ndarray | None = None,
    n_refine: int = 16,
    max_iter: int = 1000,
    screen_rows: int | None = SCREEN_ROWS,
    max_elements: int = MAX_ELEMENTS,
) -> FittedLaw:
    """Fit `law` to observations y at inputs x; `fixed` pins public parameters to given values.

    A table of more than `screen_rows` rows (None: no limit) has its starts screened and refined on that many
    rows drawn at random (seeded), and its best optima polished on every row; no array computation holds more
    than `max_elements` starts x rows, so memory stays bounded and time grows linearly with the rows.
    """
    x = _inputs(law, x)
    y_N = np.asarray(y, float)
    fixed = dict(fixed or {})
    unknown = set(fixed) - set(law.names)
    if unknown:
        raise LadderlabError(f"{law.name}: unknown fixed parameter(s) {sorted(unknown)} (has {law.names})")
    free = np.array([p.name not in fixed for p in law.params])
    check_data(law, x, y_N, int(free.sum()))
    pinned = np.array([(np.log(fixed[p.name]) if p.log else fixed[p.name]) if p.name in fixed else 0.0 for p in law.params])

    def full(theta_SxF: np.ndarray) -> np.ndarray:
        out = np.repeat(pinned[None, :], len(theta_SxF), axis=0)
        out[:, free] = theta_SxF
        return out

    def predict(theta_SxF: np.ndarray, rows: Data) -> np.ndarray:
        return law.predict_batch(full(theta_SxF), rows)

    def objective_on(rows: np.ndarray | slice):
        return blocked_objective(predict, {k: v[rows] for k, v in x.items()}, y_N[rows], law.residual, law.loss,
                                 law.delta, max_elements)

    objective = objective_on(slice(None))
    if not free.any():  # nothing to fit: evaluate the given law on this data
        fitted = _finish(law, pinned, float(objective(pinned[None, free])[0]), x, y_N, 0)
        fitted.fixed = tuple(law.names)
        return fitted
    lo, hi = law.bounds()
    grid = law.grid() if starts is None else np.atleast_2d(starts)
    candidates = np.unique(grid[:, free], axis=0)
    if screen_rows is None or len(y_N) <= screen_rows:
        best = minimize_multistart(objective, candidates, lo[free], hi[free], n_refine, max_iter)
    else:
        rows = np.sort(np.random.default_rng(0).choice(len(y_N), screen_rows, replace=False))
        best = minimize_subsampled(objective, objective_on(rows), candidates, lo[free], hi[free], n_refine, max_iter)
    theta = full(best.theta[None, :])[0]
    fitted = _finish(law, theta, best.value, x, y_N, int(free.sum()))
    fitted.fixed = tuple(p.name for p in law.params if p.name in fixed)
    if not best.converged:
        fitted.warnings.append(f"fit did not converge: {best.message}")
    fitted.warnings.extend(_at_bounds(law, theta, free))
    return fitted


def fitted_at(law: Law, theta: np.ndarray, value: float, x: Data, y: np.ndarray, converged: bool = True) -> FittedLaw:
    """The FittedLaw of parameters that another optimiser found (batched refits), with fit_law's diagnostics and
    warnings; `value` is the objective there."""
    x, y_N, theta = _inputs(law, x), np.asarray(y, float), np.asarray(theta, float)
    fitted = _finish(law, theta, float(value), x, y_N, len(theta))
    if not converged:
        fitted.warnings.append("fit did not converge: iteration limit reached")
    fitted.warnings.extend(_at_bounds(law, theta, np.ones(len(theta), bool)))
    return fitted


def _finish(law: Law, theta: np.ndarray, value: float, x: Data, y_N: np.ndarray, n_free: int) -> FittedLaw:
    pred = law.predict_batch(theta[None, :], x)[0]
    with np.errstate(all="ignore"):
        rmse_log = float(np.sqrt(np.mean((np.log(pred) - np.log(y_N)) ** 2))) if law.residual == "log" else float("nan")
        mape = float(np.mean(np.abs(pred - y_N) / np.abs(y_N)) * 100)
    warnings = [] if np.isfinite(pred).all() else ["the fitted law is not finite at some data points"]
    if len(y_N) < 2 * n_free:
        warnings.append(f"few points: {len(y_N)} rows for {n_free} parameters; intervals may be wide")
    return FittedLaw(law, theta, value, len(y_N), rmse_log, mape, warnings)


def _at_bounds(law: Law, theta: np.ndarray, free: np.ndarray) -> list[str]:
    out = []
    for p, t, f in zip(law.params, theta, free):
        edge = min((p.lo, p.hi), key=lambda b: abs(t - b))
        if f and abs(t - edge) <= 1e-6 * max(1.0, abs(edge)):
            value = np.exp(edge) if p.log else edge
            out.append(f"parameter {p.name} is at its bound {value:.4g}; the fit is not trustworthy there")
    return out
