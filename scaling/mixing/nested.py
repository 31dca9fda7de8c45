"""Nested mixture pipeline (Ye et al.): a step law per run to the target tokens, a size law per mixture to the
target size, a mixing law over the mixtures there, then the optimal mixture.

Every stage's error reaches the intervals by linear propagation. A fit maps its inputs' log errors to its
prediction's through S = d log(prediction) / d log(inputs) = g (J'J)^+ J' (J, g: Jacobians of the log prediction in
the parameters at the fitted points and at the prediction), and adds its own residual variance, pooled over the runs
(step stage) or mixtures (size stage); the mixing stage adds the spread of its held-out (out-of-fold) errors. Draws
of those errors give the pipeline's draws, read as the joint law's bootstrap replicates are (separation); a new run
adds its own checkpoint noise (the step laws' pooled residual variance), so the intervals are prediction intervals
for one run. (The runs' spread about the size laws beyond the step errors is not added: on synthetic runs it mostly
holds misestimated step-extrapolation error, and the size stage already carries it.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any, Mapping, Sequence

import numpy as np

from ladderlab.errors import LadderlabError
from ladderlab.scaling.engine.law import Data, FittedLaw, fit_law
from ladderlab.scaling.laws.power import PowerLaw
from ladderlab.scaling.mixing.law import mixture_rngs
from ladderlab.scaling.mixing.model import MixingModel, fit_mixing_model
from ladderlab.scaling.mixing.optimize import MixturePrediction, optimize_mixture
from ladderlab.scaling.mixing.table import check_proportions

STEP, SIZE = PowerLaw("step"), PowerLaw("size")
MIN_POINTS = 4  # distinct steps per run (step law) and sizes per mixture (size law): 3 parameters and one check


def sensitivity(fitted: FittedLaw, x_fit: Data, x_at: Data) -> np.ndarray:
    """d log(prediction at x_at) / d log(observed at x_fit) of the fit, linearised: n_at x n_fit. A parameter at
    its bound stays there under small changes of the data, so it is held fixed."""
    lo, hi = fitted.law.bounds()
    theta = fitted.theta
    free = np.flatnonzero((np.abs(theta - lo) > 1e-6 * np.maximum(1.0, np.abs(lo)))
                          & (np.abs(theta - hi) > 1e-6 * np.maximum(1.0, np.abs(hi))))
    p = len(free)
    h = 1e-6 * np.maximum(1.0, np.abs(theta[free]))
    step = np.zeros((p, len(theta)))
    step[np.arange(p), free] = h
    shifted = np.concatenate([theta + step, theta - step])

    def jacobian(x: Data) -> np.ndarray:
        with np.errstate(all="ignore"):
            log_pred = np.log(fitted.law.predict_batch(shifted, x))
        return np.nan_to_num(((log_pred[:p] - log_pred[p:]) / (2 * h[:, None])).T)

    return jacobian(x_at) @ np.linalg.pinv(jacobian(x_fit), rcond=1e-10)


def power_starts(v: np.ndarray, y: np.ndarray, keep: int = 3) -> np.ndarray:
    """Starts for L = E + A/v^alpha (internal: log E, log A, alpha): on a grid of alpha, E and A by least squares
    (floored at a tiny positive value), the `keep` best by squared log error. A fit from them takes a third of the
    time of one from the grid and ends no worse."""
    alpha_G = np.linspace(0.02, 2.0, 100)
    f_GxN = v[None, :] ** -alpha_G[:, None]
    n, s1, s2 = len(v), f_GxN.sum(axis=1), (f_GxN**2).sum(axis=1)
    sy, sfy = y.sum(), f_GxN @ y
    det = n * s2 - s1**2
    floor = 1e-6 * y.min()
    e_G = np.maximum((s2 * sy - s1 * sfy) / det, floor)
    a_G = np.maximum((n * sfy - s1 * sy) / det, floor)
    sse = np.sum((np.log(e_G[:, None] + a_G[:, None] * f_GxN) - np.log(y)[None, :]) ** 2, axis=1)
    best = np.argsort(sse)[:keep]
    return np.column_stack([np.log(e_G[best]), np.log(a_G[best]), alpha_G[best]])


def fit_power(law: PowerLaw, v: np.ndarray, y: np.ndarray) -> FittedLaw:
    """A step or size law fitted from `power_starts`."""
    return fit_law(law, {law.inputs[0]: v}, y, starts=power_starts(v, y), n_refine=1)


def pooled_variance(fits: Sequence[FittedLaw]) -> float:
    """Residual variance of log loss pooled over fits: squared log residuals over degrees of freedom."""
    dof = sum(f.n_points - len(f.law.params) for f in fits)
    return sum(f.rmse_log**2 * f.n_points for f in fits) / dof if dof > 0 else 0.0


@dataclass(frozen=True)
class Runs:
    """A table's runs: each run's mixture (a row of `shares`), its size N and its checkpoints' tokens (or steps)."""

    shares: np.ndarray  # mixtures x domains
    mixture: np.ndarray  # per run: its row in shares
    size: np.ndarray  # per run
    tokens: list[np.ndarray]  # per run

    def subset(self, keep: np.ndarray) -> Runs:
        """The runs where keep is true (the mixtures table unchanged)."""
        return Runs(self.shares, self.mixture[keep], self.size[keep], [t for t, k in zip(self.tokens, keep) if k])


def runs_of(r_NxM: np.ndarray, n: np.ndarray, d: np.ndarray, groups: np.ndarray) -> tuple[Runs, list[np.ndarray]]:
    """The runs of a table (one row per checkpoint; groups: each row's run) and each run's row indices."""
    rows = [np.flatnonzero(groups == g) for g in np.unique(groups)]
    shares, mixture = np.unique(np.round(np.array([r_NxM[i[0]] for i in rows]), 9), axis=0, return_inverse=True)
    return Runs(shares, mixture.ravel(), np.array([n[i[0]] for i in rows], float), [d[i] for i in rows]), rows


def problem(runs: Runs) -> str | None:
    """Why the nested pipeline cannot fit these runs (a mixture with too few sizes, a run with too few
    checkpoints), or None."""
    for m in np.unique(runs.mixture):
        sizes = np.unique(runs.size[runs.mixture == m])
        if len(sizes) < MIN_POINTS:
            return f"mixture {_shares_text(runs.shares[m])} has {len(sizes)} sizes; the size law needs {MIN_POINTS}"
    for t, n in zip(runs.tokens, runs.size):
        if len(np.unique(t)) < MIN_POINTS:
            return f"a run of N={n:.4g} has {len(np.unique(t))} distinct checkpoints; the step law needs {MIN_POINTS}"
    return None


def _shares_text(r: np.ndarray) -> str:
    return "(" + ", ".join(f"{v:.3g}" for v in r) + ")"


def fit_steps(runs: Runs, rows: list[np.ndarray], y: np.ndarray, what: str) -> list[FittedLaw]:
    """The step law of every run, fitted to its checkpoints."""
    out = []
    for t, idx, n in zip(runs.tokens, rows, runs.size):
        try:
            out.append(fit_power(STEP, t, y[idx]))
        except LadderlabError as e:
            raise LadderlabError(f"{what}, run of N={n:.4g}: {e}") from None
    return out


@dataclass
class Nested:
    """The pipeline's first stage, which does not depend on the target: per loss column the step law of every run."""

    runs: Runs
    domains: tuple[str, ...]
    steps: dict[str, list[FittedLaw]]

    def extrapolate(self, n: float, d: float, draws: int = 200, seed: int = 0) -> tuple[dict, dict, dict, list[str]]:
        """The step and size stages at the target (N, D): per loss column each mixture's extrapolated loss, its
        log-error draws (draws x mixtures, the same normal draws for every column) and a new run's log variance about
        it (the step laws' pooled checkpoint noise), and the size laws' warnings."""
        runs, rng = self.runs, np.random.default_rng(seed)
        e_step, e_size = rng.standard_normal((2, draws, len(runs.size)))
        extrapolated, zeta, run_var, warnings = {}, {}, {}, []
        for col, steps in self.steps.items():
            z1 = np.array([f.predict(S=d)[0] for f in steps])
            v1 = pooled_variance(steps) * np.array(
                [np.sum(sensitivity(f, {"S": t}, {"S": np.array([d])}) ** 2) for f, t in zip(steps, runs.tokens)])
            sizes = []
            for m in np.unique(runs.mixture):
                k = np.flatnonzero(runs.mixture == m)
                what = f"{col}: size law of mixture {_shares_text(runs.shares[m])}"
                try:
                    sizes.append((k, fit_power(SIZE, runs.size[k], z1[k])))
                except LadderlabError as e:
                    raise LadderlabError(f"{what}: {e}") from None
                warnings += [f"{what}: {w}" for w in sizes[-1][1].warnings if "few points" not in w]
            v2 = max(0.0, pooled_variance([f for _, f in sizes]) - float(np.mean(v1)))  # beyond the step noise
            run_var[col] = pooled_variance(steps)
            extrapolated[col] = np.array([f.predict(N=n)[0] for _, f in sizes])
            zeta[col] = np.column_stack([
                (e_step[:, k] * np.sqrt(v1[k]) + e_size[:, k] * np.sqrt(v2))
                @ sensitivity(f, {"N": runs.size[k]}, {"N": np.array([n])})[0] for k, f in sizes])
        return extrapolated, zeta, run_var, warnings

    def at(self, n: float, d: float, draws: int = 200, seed: int = 0, model: str = "auto") -> NestedAt:
        """The size and mixing stages at the target (N, D), with `draws` propagated error draws per column."""
        extrapolated, zeta, run_var, warnings = self.extrapolate(n, d, draws, seed)
        props = dict(zip(self.domains, self.runs.shares[np.unique(self.runs.mixture)].T))
        mixing = fit_mixing_model(props, extrapolated, model, seed=seed)
        warnings += [f"{c}: mixing law: {w}" for c, f in mixing.laws.items() for w in f.warnings] + mixing.warnings
        return NestedAt(mixing, props, extrapolated, zeta, run_var, draws, seed, warnings)

    def to_json(self) -> dict[str, Any]:
        return {"shares": self.runs.shares.tolist(), "mixture": self.runs.mixture.tolist(),
                "size": self.runs.size.tolist(), "tokens": [t.tolist() for t in self.runs.tokens],
                "steps": {c: [f.to_json() for f in s] for c, s in self.steps.items()}}

    @classmethod
    def from_json(cls, domains: Sequence[str], doc: Mapping[str, Any]) -> Nested:
        runs = Runs(np.array(doc["shares"], float), np.array(doc["mixture"], int), np.array(doc["size"], float),
                    [np.array(t, float) for t in doc["tokens"]])
        steps = {c: [FittedLaw.from_json(STEP, f) for f in s] for c, s in doc["steps"].items()}
        return cls(runs, tuple(domains), steps)


@dataclass
class NestedAt:
    """The pipeline at one (N, D): the mixing model on the extrapolated losses, the upstream log-error draws
    (draws x mixtures) that the mixing law carries to any mixture, and a new run's log variance per column."""

    mixing: MixingModel
    fitted_shares: dict[str, np.ndarray]
    extrapolated: dict[str, np.ndarray]
    zeta: dict[str, np.ndarray]
    run_var: dict[str, float]
    n_draws: int
    seed: int
    warnings: list[str] = field(default_factory=list)

    def point(self, r_NxM: np.ndarray) -> dict[str, np.ndarray]:
        return self.mixing.predict(dict(zip(self.mixing.domains, r_NxM.T)))

    def draws(self, r_NxM: np.ndarray) -> dict[str, np.ndarray] | None:
        """Per column draws x N predictions: upstream errors carried through the mixing law, plus the law's own error
        (the spread of its held-out errors beyond the upstream errors they hold; one draw per mixture, the same
        whenever that mixture is asked for); None without draws."""
        if self.n_draws == 0:
            return None
        own = np.column_stack([g.standard_normal(self.n_draws) for g in mixture_rngs(self.seed, r_NxM)])
        z = NormalDist().inv_cdf(0.95)
        out = {}
        for col, pred in self.point(r_NxM).items():
            lo, hi = self.mixing.interval(np.ones(1), {col: 1.0}, 0.9)
            # the held-out errors' spread already holds the mixtures' own upstream errors: only the rest is the law's
            spread = np.sqrt(max(0.0, (np.log(hi[0] / lo[0]) / (2 * z)) ** 2 - np.mean(np.var(self.zeta[col], axis=0))))
            s = sensitivity(self.mixing.laws[col], self.fitted_shares, dict(zip(self.mixing.domains, r_NxM.T)))
            out[col] = pred[None, :] * np.exp(self.zeta[col] @ s.T + spread * own)
        return out

    def run_noise(self, r_NxM: np.ndarray, n_draws: int) -> dict[str, np.ndarray]:
        """Per column a new run's log deviation from the pipeline's loss (n_draws x N): normal with the run variance,
        the same draws whenever a mixture is asked for."""
        noise = np.column_stack([g.standard_normal(n_draws) for g in mixture_rngs(self.seed, r_NxM, stream=1)])
        return {c: np.sqrt(v) * noise for c, v in self.run_var.items()}


@dataclass
class NestedResult:
    """Losses extrapolated to (target_steps, target_size) per mixture, the mixing model on them and the optimum."""

    ids: list[str]
    extrapolated: dict[str, np.ndarray]
    mixing: MixingModel
    optimum: MixturePrediction


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
    ids = [str(i) for i in proportions]
    run_mixture = np.asarray(run_mixture).astype(str)
    unknown, unused = sorted(set(run_mixture) - set(ids)), [i for i in ids if i not in set(run_mixture)]
    if unknown:
        raise LadderlabError(f"runs use mixture id(s) {', '.join(unknown[:3])} with no proportions")
    if unused:
        raise LadderlabError(f"mixture id(s) {', '.join(unused[:3])} have no runs")
    domains = sorted({d for shares in proportions.values() for d in shares})
    table = np.array([[proportions[i].get(d, 0.0) for d in domains] for i in proportions])
    check_proportions(dict(zip(domains, table.T)), "mixture proportions")
    run_size = np.asarray(run_size, float)
    groups = np.unique(np.column_stack([run_mixture, run_size.astype(str)]), axis=0, return_inverse=True)[1].ravel()
    runs, rows = runs_of(table[[ids.index(m) for m in run_mixture]], run_size, np.asarray(run_steps, float), groups)
    reason = problem(runs)
    if reason:
        raise LadderlabError(reason)
    steps = {c: fit_steps(runs, rows, np.asarray(y, float), c) for c, y in run_losses.items()}
    nested = Nested(runs, tuple(domains), steps)
    at = nested.at(target_size, target_steps, draws=0, model=model)
    row = [int(np.flatnonzero(np.all(np.isclose(runs.shares, r, atol=1e-9), axis=1))[0]) for r in table]
    where = {m: j for j, m in enumerate(np.unique(runs.mixture))}
    extrapolated = {c: v[[where[m] for m in row]] for c, v in at.extrapolated.items()}
    return NestedResult(ids, extrapolated, at.mixing, optimize_mixture(at.mixing, **optimize))
