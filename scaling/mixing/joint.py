"""Joint mixture-scaling law: loss as a function of model size N, tokens D and training-domain shares r, fitted at once.

The "joint" form of a mixture-scaling law (scaling.mixing.mixture_scaling picks it or the nested pipeline by
backtest): the additive structure of Shukor et al. 2025's joint laws with Ye et al. 2024's exponential mixing term,
per loss column:
    L(N, D, r) = E + A / N^alpha + B / D^beta + k exp(sum_j t_j r_j)
with one alpha and one beta for every mixture (tied exponents, as Ye et al.'s `--tie_alpha`), so all runs of all
mixtures, sizes and checkpoints inform one fit. Shares sum to 1, so the last domain's t is pinned to 0. The law's
uncertainty is a bootstrap over runs (all checkpoints of a run are drawn together); a new run adds its own scatter
about the law, drawn from the fitted runs' last checkpoints' log residuals (`run_scatter`), so the intervals are
prediction intervals for one run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from ladderlab.errors import LadderlabError
from ladderlab.scaling.engine.batch_fit import refine_batch
from ladderlab.scaling.engine.bootstrap import bootstrap as bootstrap_fit
from ladderlab.scaling.engine.law import Data, FittedLaw, Law, Param, check_data, fit_law
from ladderlab.scaling.engine.minimize import blocked_objective, screen
from ladderlab.scaling.mixing.law import mixture_rngs, stack

FORMULA = "L = E + A/N^alpha + B/D^beta + k exp(sum_j t_j r_j)"
RESERVED = ("N", "D")  # the law's size and token inputs: no domain may take these names
REFINE = 8  # best grid starts refined together; 4, 8, 16 find one optimum on a synthetic sweep


class MixtureScalingLaw(Law):
    """The additive joint law for one loss column; E, A, B, k fitted in log space, alpha, beta and t as values."""

    name = "mixture-scaling"
    positive = RESERVED

    def __init__(self, domains: Sequence[str]):
        clash = [d for d in domains if d in RESERVED]
        if clash:
            raise LadderlabError(f"mixture-scaling: share column {clash[0]!r} clashes with the law's input names N, D")
        if len(domains) < 2:
            raise LadderlabError(f"mixture-scaling: needs at least 2 share columns, got {list(domains)}")
        self.domains = tuple(domains)
        self.inputs = (*RESERVED, *self.domains)
        self.params = (
            Param("E", True, -10.0, 5.0, (-1.0, 0.0, 0.5)),
            Param("A", True, -20.0, 60.0, (0.0, 5.0, 10.0, 15.0)),
            Param("alpha", False, 0.0, 4.0, (0.25, 0.5, 1.0)),
            Param("B", True, -20.0, 60.0, (0.0, 5.0, 10.0, 15.0)),
            Param("beta", False, 0.0, 4.0, (0.25, 0.5, 1.0)),
            Param("k", True, -30.0, 10.0, (-3.0, -1.0)),
            *(Param(f"t_{d}", False, -100.0, 100.0, (0.0,)) for d in self.domains[:-1]),
        )

    def spec(self) -> dict[str, Any]:
        return {"domains": list(self.domains)}

    def predict_batch(self, theta_SxP: np.ndarray, x: Data) -> np.ndarray:
        e, a, alpha, b, beta, k = (theta_SxP[:, i : i + 1] for i in range(6))
        log_n, log_d = np.log(x["N"])[None, :], np.log(x["D"])[None, :]
        mixing_SxN = np.exp(k + theta_SxP[:, 6:] @ stack(x, self.domains)[:, :-1].T)
        return np.exp(e) + np.exp(a - alpha * log_n) + np.exp(b - beta * log_d) + mixing_SxN


def run_groups(shares: Mapping[str, np.ndarray], n: np.ndarray, runs: np.ndarray | None = None) -> np.ndarray:
    """Run index of every row: by the run ids when given, else rows with the same shares and N are one run."""
    if runs is not None:
        return np.unique(np.asarray(runs).astype(str), return_inverse=True)[1]
    key = np.column_stack([*(np.round(np.asarray(v, float), 9) for v in shares.values()), np.asarray(n, float)])
    return np.unique(key, axis=0, return_inverse=True)[1].ravel()


def fit_batched(law: MixtureScalingLaw, x: Data, y: np.ndarray, extra: np.ndarray | None = None) -> FittedLaw:
    """Screen the law's grid (and `extra` starts), refine the REFINE best at once by batched Levenberg-Marquardt,
    and polish the best with one L-BFGS-B run (which gives the fit's diagnostics and warnings): the same optimum as
    refining each start by L-BFGS-B, ~15x sooner on the 20-mixture x 4-size x 10-checkpoint sweep."""
    lo, hi = law.bounds()
    grid = np.clip(law.grid() if extra is None else np.vstack([extra, law.grid()]), lo, hi)
    values = screen(blocked_objective(law.predict_batch, x, y, law.residual, law.loss, law.delta), grid)
    starts = grid[np.argsort(values, kind="stable")[:REFINE]]
    with np.errstate(all="ignore"):
        theta, value, _ = refine_batch(lambda t: np.log(law.predict_batch(t, x)), starts, np.ones((len(starts), len(y))),
                                       lo, hi, law.loss, law.delta, targets_BxN=np.repeat(np.log(y)[None], len(starts), 0))
    best = theta[np.argmin(np.where(np.isfinite(value), value, np.inf))]
    return fit_law(law, x, y, starts=best[None, :], n_refine=1)


def fit_joint(x: Data, losses: Mapping[str, np.ndarray], groups: np.ndarray, bootstrap: int, seed: int,
              source: str, near: Mapping[str, FittedLaw] | None = None) -> dict[str, FittedLaw]:
    """The joint law fitted to every loss column over all rows (checkpoints) at once; the bootstrap resamples runs
    (`groups`: each row's run) within each mixture, so every mixture's t stays identified in every replicate, with
    the same draws for every column. `near`: fits of the same columns on part of the rows (the backtest's), whose
    optima join the starts."""
    law = MixtureScalingLaw([k for k in x if k not in RESERVED])
    x = {k: np.asarray(v, float) for k, v in x.items()}
    mixture = np.unique(np.round(stack(x, law.domains), 9), axis=0, return_inverse=True)[1].ravel()
    laws = {}
    for col, y in losses.items():
        y = np.asarray(y, float)
        try:
            check_data(law, x, y, len(law.params))
            fitted = fit_batched(law, x, y, None if near is None else near[col].theta[None, :])
        except LadderlabError as e:
            raise LadderlabError(f"{source}, column {col}: {e}") from None
        if bootstrap > 0:
            fitted = bootstrap_fit(fitted, x, y, n=bootstrap, seed=seed, groups=groups, warm=True, strata=mixture)
        laws[col] = fitted
    return laws


def run_scatter(laws: Mapping[str, FittedLaw], x: Data, losses: Mapping[str, np.ndarray],
                groups: np.ndarray) -> dict[str, np.ndarray]:
    """Per loss column the centred log residuals of every run's last checkpoint about the fitted law: how far one
    run lands from the law (checkpoint noise, seed and the law's misfit together)."""
    last = np.array([np.flatnonzero(groups == g)[np.argmax(x["D"][groups == g])] for g in np.unique(groups)])
    at = {k: np.asarray(v, float)[last] for k, v in x.items()}
    out = {}
    for col, f in laws.items():
        residual = np.log(np.asarray(losses[col], float)[last] / f.predict(**at))
        out[col] = residual - residual.mean()
    return out


def joint_from_json(domains: Sequence[str], targets: Mapping[str, Any]) -> dict[str, FittedLaw]:
    """The fitted joint laws that `FittedLaw.to_json` wrote per loss column."""
    law = MixtureScalingLaw(domains)
    return {c: FittedLaw.from_json(law, t) for c, t in targets.items()}


@dataclass
class JointAt:
    """The joint laws at one (N, D): point predictions, bootstrap draws and a new run's scatter for mixtures given
    as rows of shares."""

    laws: dict[str, FittedLaw]
    domains: tuple[str, ...]
    n: float
    d: float
    scatter: dict[str, np.ndarray]  # per column: the fitted runs' log residuals (run_scatter)
    seed: int = 0

    @property
    def warnings(self) -> list[str]:
        """Warnings that arise at this run: none (the fit's own are the law's)."""
        return []

    def _x(self, r_NxM: np.ndarray) -> dict[str, np.ndarray]:
        size = len(r_NxM)
        return {"N": np.full(size, self.n), "D": np.full(size, self.d), **dict(zip(self.domains, r_NxM.T))}

    def point(self, r_NxM: np.ndarray) -> dict[str, np.ndarray]:
        return {c: f.predict(**self._x(r_NxM)) for c, f in self.laws.items()}

    def draws(self, r_NxM: np.ndarray) -> dict[str, np.ndarray] | None:
        """Per column the bootstrap replicates' predictions (B x N); None without replicates."""
        if any(f.boot_BxP is None for f in self.laws.values()):
            return None
        return {c: f.predict_samples(**self._x(r_NxM)) for c, f in self.laws.items()}

    def run_noise(self, r_NxM: np.ndarray, n_draws: int) -> dict[str, np.ndarray]:
        """Per column a new run's log deviation from the law (n_draws x N): a fitted run's residual drawn at random
        per draw, the same draws whenever a mixture is asked for."""
        return {c: np.column_stack([g.choice(s, n_draws) for g in mixture_rngs(self.seed, r_NxM, stream=1)])
                for c, s in self.scatter.items()}
