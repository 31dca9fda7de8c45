"""LR-annealing law (Tissue et al. 2024): L(s) = L0 + A S1^-alpha - C S2, from the learning-rate schedule.

S1 is the forward area (sum of learning rates so far) and S2 the annealing area with momentum:
m_i = lam m_(i-1) + (eta_(i-1) - eta_i), S2 = sum of m_i. One law then predicts the loss along any schedule.
With size=True a term K (N/1e9)^-nu joins (ours), so runs of several sizes fit one law. Fitted on curves, the
momentum lam can be chosen by fit (fit_curves): on the OLMo WSD ladder 0.999 makes a long cooldown's gain grow far
past what the short ones show, and 0.9-0.99 fit and predict much better.

Warm-up: the steps of the initial rise (by default the stretch before the rate first falls) add their rates to S1
but nothing to S2: the momentum starts at 0 where warm-up ends, so a warm-up changes only the forward area. A rise
later in the schedule (a re-warm before continual pre-training) counts as negative annealing: S2 falls and the
predicted loss rises.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from scipy.signal import lfilter

from ladderlab.errors import LadderlabError
from ladderlab.scaling.engine.bootstrap import bootstrap as run_bootstrap
from ladderlab.scaling.engine.law import Data, FittedLaw, Law, Param, fit_law
from ladderlab.scaling.tables.curves import Curve

SIZE_SCALE = 1e9
LAMBDAS = (0.9, 0.95, 0.99, 0.995, 0.999)  # the momenta fit_curves tries when none is given


def warmup_length(lr_T: np.ndarray) -> int:
    """Steps of the initial rise: those before the rate first falls (the whole schedule if it never falls)."""
    falls = np.flatnonzero(np.diff(lr_T) < 0)
    return len(lr_T) if falls.size == 0 else int(falls[0]) + 1


def lr_areas(lr_T: Any, lam: float = 0.999, warmup: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """S1 and S2 after each of T steps of the schedule lr_T (lr_T[i] is the rate used at step i+1); the first
    `warmup` steps (default: warmup_length) add nothing to S2."""
    lr_T = np.asarray(lr_T, float)
    drop = -np.diff(lr_T, prepend=lr_T[:1])
    drop[: warmup_length(lr_T) if warmup is None else warmup] = 0.0
    m = lfilter([1.0], [1.0, -lam], drop)  # m_i = lam m_(i-1) + drop_i
    return np.cumsum(lr_T), np.cumsum(m)


def dense_schedule(steps: Any, lrs: Any) -> np.ndarray:
    """The rate at steps 1..max(steps) from logged (step, rate) pairs: linear between them, the first logged rate
    before the first logged step."""
    steps = np.asarray(steps, float)
    bad = (steps < 0) | (steps != np.round(steps))
    if bad.any():
        raise LadderlabError(f"annealing: steps must be whole numbers >= 0, got {steps[bad][0]}")
    order = np.argsort(steps, kind="stable")
    return np.interp(np.arange(1, int(steps.max()) + 1), steps[order], np.asarray(lrs, float)[order])


def areas_at(steps: Any, lrs: Any, lam: float = 0.999, at: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """S1, S2 at the steps `at` (default: the logged steps; step 0: both 0) of a run whose rate was logged as
    (steps, lrs), the rate between logged steps interpolated linearly."""
    s1, s2 = lr_areas(dense_schedule(steps, lrs), lam)
    idx = np.asarray(steps if at is None else at, float).astype(int)
    if idx.max() > len(s1):
        raise LadderlabError(f"annealing: step {idx.max()} is past the last logged rate (step {len(s1)})")
    return np.concatenate([[0.0], s1])[idx], np.concatenate([[0.0], s2])[idx]


class Annealing(Law):
    """Inputs S1, S2 (see lr_areas), and N with size=True; parameters L0, A, alpha, C (and K, nu)."""

    name = "annealing"
    positive = ("S1",)  # S2 is 0 until the rate first drops

    def __init__(self, lam: float = 0.999, size: bool = False):
        self.lam, self.size = lam, size
        self.inputs = ("S1", "S2", "N") if size else ("S1", "S2")
        self.params = (
            Param("L0", True, -10.0, 5.0, (-0.5, 0.0, 0.5, 1.0, 1.5)),
            Param("A", True, -15.0, 10.0, (-4.0, -2.0, 0.0, 2.0)),
            Param("alpha", False, 0.0, 4.0, (0.1, 0.3, 0.5, 1.0)),
            Param("C", False, 0.0, 1e4, (0.0, 0.1, 1.0, 10.0)),
        ) + ((Param("K", True, -15.0, 5.0, (-2.0, 0.0)), Param("nu", False, 0.0, 3.0, (0.3, 0.6))) if size else ())
        if size:
            self.positive = ("S1", "N")

    def spec(self) -> dict[str, Any]:
        return {"lam": self.lam, "size": self.size} if self.size else {"lam": self.lam}

    def predict_batch(self, theta_SxP: np.ndarray, x: Data) -> np.ndarray:
        log_l0, log_a, alpha, c = (theta_SxP[:, i : i + 1] for i in range(4))
        s1, s2 = x["S1"][None, :], x["S2"][None, :]
        out = np.exp(log_l0) + np.exp(log_a - alpha * np.log(s1)) - c * s2
        if self.size:
            log_k, nu = theta_SxP[:, 4:5], theta_SxP[:, 5:6]
            out = out + np.exp(log_k - nu * np.log(x["N"] / SIZE_SCALE)[None, :])
        return out


def predict_schedule(fitted: FittedLaw, lr_T: np.ndarray, size: float | None = None) -> np.ndarray:
    """Loss after every step of a whole learning-rate schedule (at model size `size` for a law with a size term)."""
    s1, s2 = lr_areas(lr_T, fitted.law.lam)
    if getattr(fitted.law, "size", False):
        if size is None:
            raise LadderlabError("annealing: this law has a size term; give the model size N")
        return fitted.predict(S1=s1, S2=s2, N=size)
    return fitted.predict(S1=s1, S2=s2)


def curve_areas(curve: Curve, lam: float = 0.999) -> tuple[np.ndarray, np.ndarray]:
    """S1, S2 of a curve's whole schedule (its parent's included) after every step 1..last."""
    lr = dense_schedule(curve.lr_steps, curve.lr)
    if len(lr) < curve.last:
        raise LadderlabError(f"{curve.run}: learning rates logged to step {len(lr)}, losses to step {curve.last}")
    return lr_areas(lr, lam)


def curve_data(curves: Sequence[Curve], lam: float = 0.999, min_step: int = 1) -> tuple[dict, np.ndarray, np.ndarray]:
    """Inputs S1, S2, N, the losses and each point's run id, over every logged step >= min_step of the curves."""
    s1, s2, n, y, run = [], [], [], [], []
    for c in curves:
        a1, a2 = curve_areas(c, lam)
        keep = c.steps >= max(min_step, 1)
        idx = c.steps[keep].astype(int) - 1
        s1.append(a1[idx]), s2.append(a2[idx]), y.append(c.loss[keep])
        n.append(np.full(idx.size, c.n)), run.append(np.full(idx.size, c.run, object))
    if not sum(len(v) for v in y):
        raise LadderlabError(f"annealing: no logged step >= {min_step} in the curves")
    return ({"S1": np.concatenate(s1), "S2": np.concatenate(s2), "N": np.concatenate(n)}, np.concatenate(y),
            np.concatenate(run))


def final_predictions(fitted: FittedLaw, curves: Sequence[Curve], level: float = 0.9) -> dict[str, np.ndarray | None]:
    """Each curve's loss at its last logged step (`actual`), the law's prediction there (`pred`) and its interval
    (`lo`, `hi`: None for a law fitted without bootstrap)."""
    areas = [curve_areas(c, fitted.law.lam) for c in curves]
    x = {"S1": np.array([a1[c.last - 1] for c, (a1, _) in zip(curves, areas)]),
         "S2": np.array([a2[c.last - 1] for c, (_, a2) in zip(curves, areas)]),
         "N": np.array([c.n for c in curves], float)}
    x = {k: x[k] for k in fitted.law.inputs}
    lo, hi = fitted.interval(level, **x) if fitted.boot_BxP is not None else (None, None)
    return {"actual": np.array([c.loss[np.argmax(c.steps)] for c in curves]), "pred": fitted.predict(**x),
            "lo": lo, "hi": hi}


def fit_curves(curves: Sequence[Curve], lam: float | None = None, size: bool | None = None, min_step: int = 1,
               bootstrap: int = 0, seed: int = 0) -> FittedLaw:
    """The annealing law fitted on every logged step of the curves (size term: default when they span sizes);
    lam=None profiles the momentum over LAMBDAS and keeps the best fit. Bootstrap replicates resample whole runs."""
    best = None
    for value in LAMBDAS if lam is None else (lam,):
        x, y, runs = curve_data(curves, value, min_step)
        law = Annealing(value, len(np.unique(x["N"])) > 1 if size is None else size)
        x = {k: x[k] for k in law.inputs}
        fitted = fit_law(law, x, y)
        if best is None or fitted.objective < best[0].objective:
            best = fitted, x, y, runs
    fitted, x, y, runs = best
    if bootstrap:
        run_bootstrap(fitted, x, y, n=bootstrap, seed=seed, groups=runs, warm=True)
    return fitted
