"""Data mixing laws (Ye et al. 2024) over training-domain proportions r, as engine laws.

Per validation domain: L(r) = c + k exp(w . f(r)). The plain law uses f(r) = r (the paper's form); the
"log" law adds log(r_j + eps) features, so L is c + k exp(t.r) prod_j (r_j + eps)^u_j: loss can fall steeply as a
domain's share leaves zero, which the plain law cannot express. The implicit law fits a total loss as
bias + sum_k exp(a_k + t_k . r) over K latent domains (the paper's implicit aggregation).
Shares sum to 1, so only differences of the t's are identified: the last domain's t is pinned to 0, and k is the
reducible loss of a run on that domain alone (plain law).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ladderlab.errors import LadderlabError
from ladderlab.scaling.engine.law import Data, FittedLaw, Law, Param, fit_law

EPS = 1e-3  # floor inside log(r + eps): RegMix-style data records shares to 3 decimals
FEATURES = ("linear", "log")


def features(r_NxM: np.ndarray, kind: str, eps: float = EPS) -> np.ndarray:
    """Exponent features: the shares but the last (whose t is 0), and for "log" also log(r + eps) of every share."""
    linear = r_NxM[:, :-1]
    return linear if kind == "linear" else np.hstack([linear, np.log(r_NxM + eps)])


def stack(x: Data, domains: Sequence[str]) -> np.ndarray:
    """Proportions as an N x M array, columns in domain order."""
    return np.stack([np.asarray(x[d], float) for d in domains], axis=1)


class MixingLaw(Law):
    """L(r) = c + k exp(w . f(r)) for one validation domain; c, k fitted in log space, w free."""

    name = "mixing"
    positive = ()

    def __init__(self, domains: Sequence[str], features: str = "linear", eps: float = EPS):
        if features not in FEATURES:
            raise LadderlabError(f"mixing law: unknown features {features!r} (known: {', '.join(FEATURES)})")
        self.inputs = tuple(domains)
        self.features, self.eps = features, float(eps)
        weights = [Param(f"t_{d}", False, -100.0, 100.0, (0.0,)) for d in domains[:-1]]
        if features == "log":
            weights += [Param(f"u_{d}", False, -10.0, 10.0, (0.0,)) for d in domains]
        self.params = (Param("c", True, -20.0, 5.0, (0.0,)), Param("k", True, -30.0, 30.0, (0.0,)), *weights)

    def spec(self) -> dict[str, Any]:
        return {"domains": list(self.inputs), "features": self.features, "eps": self.eps}

    def predict_batch(self, theta_SxP: np.ndarray, x: Data) -> np.ndarray:
        f_NxF = features(stack(x, self.inputs), self.features, self.eps)
        return np.exp(theta_SxP[:, :1]) + np.exp(theta_SxP[:, 1:2] + theta_SxP[:, 2:] @ f_NxF.T)

    def starts(self, x: Data, y: np.ndarray) -> np.ndarray:
        """Closed-form starts: for c at fractions of min(y), least squares of log(y - c) on [1, f(r)]."""
        f_NxF = features(stack(x, self.inputs), self.features, self.eps)
        design = np.hstack([np.ones((len(y), 1)), f_NxF])
        rows = []
        for frac in (0.3, 0.6, 0.8, 0.9, 0.95, 0.98):
            c = frac * y.min()
            coef = np.linalg.lstsq(design, np.log(y - c), rcond=None)[0]
            rows.append([np.log(c), *coef])
        lo, hi = self.bounds()
        return np.clip(np.array(rows), lo, hi)


class ImplicitMixingLaw(Law):
    """Implicit aggregation: total L(r) = b + sum_k exp(a_k + t_k . r) over K latent validation domains."""

    name = "mixing-implicit"
    positive = ()

    def __init__(self, domains: Sequence[str], latent: int = 3):
        self.inputs, self.latent = tuple(domains), int(latent)
        per = [(Param(f"a{k}", False, -30.0, 30.0, (0.0,)), *(Param(f"t{k}_{d}", False, -100.0, 100.0, (0.0,)) for d in domains[:-1]))
               for k in range(self.latent)]
        self.params = (Param("b", True, -20.0, 5.0, (0.0,)), *(p for group in per for p in group))

    def spec(self) -> dict[str, Any]:
        return {"domains": list(self.inputs), "latent": self.latent}

    def predict_batch(self, theta_SxP: np.ndarray, x: Data) -> np.ndarray:
        f_NxF = features(stack(x, self.inputs), "linear")
        blocks_SxKx1pF = theta_SxP[:, 1:].reshape(len(theta_SxP), self.latent, f_NxF.shape[1] + 1)
        z_SxKxN = blocks_SxKx1pF[:, :, :1] + blocks_SxKx1pF[:, :, 1:] @ f_NxF.T
        return np.exp(theta_SxP[:, :1]) + np.exp(z_SxKxN).sum(axis=1)

    def starts(self, x: Data, y: np.ndarray) -> np.ndarray:
        """The plain law's closed-form starts split into K equal latent terms, with seeded jitter on the exponents."""
        plain = MixingLaw(self.inputs).starts(x, y)
        rng = np.random.default_rng(0)
        rows = []
        for c, k, *t in plain:
            for _ in range(3):
                blocks = [[k - np.log(self.latent), *(np.array(t) + rng.normal(0, 0.5, len(t)))] for _ in range(self.latent)]
                rows.append([c, *np.ravel(blocks)])
        lo, hi = self.bounds()
        return np.clip(np.array(rows), lo, hi)


PROBE_STEPS = 30  # a capped fit is continued for this many steps ...
CAP_TOLERANCE = 0.02  # ... and the cap is reported only if that still lowers the objective by more than 2%
# (on the 512 RegMix runs, 13 columns x plain and log: at most 1.0% after the 300-step cap; 96 runs: 3-10% after 5-30)


def fit_mixing(law: MixingLaw | ImplicitMixingLaw, x: Data, y: np.ndarray, n_refine: int = 2, max_iter: int = 300,
               check_cap: bool = True) -> FittedLaw:
    """Fit a mixing law with the engine from its closed-form starts (300 L-BFGS-B steps: held-out error is flat
    beyond that on the RegMix runs, while the many weakly determined exponents keep creeping). A fit stopped at the
    cap is continued briefly (check_cap): the cap is warned about only if the objective was still falling by more
    than CAP_TOLERANCE, i.e. the fit truly stopped early, not while creeping along a flat valley."""
    y = np.asarray(y, float)
    fitted = fit_law(law, x, y, starts=law.starts(x, y), n_refine=n_refine, max_iter=max_iter)
    capped = [w for w in fitted.warnings if "ITERATIONS REACHED LIMIT" in w]
    if capped:
        fitted.warnings.remove(capped[0])
        gain = cap_gain(fitted, x, y, PROBE_STEPS) if check_cap else None
        if gain is not None and gain > CAP_TOLERANCE:
            fitted.warnings.append(f"stopped at the {max_iter}-step cap while still improving (objective "
                                   f"{gain:.1%} lower after {PROBE_STEPS} more steps); raise the cap or "
                                   "judge this fit by its held-out scores")
    return fitted


def cap_gain(fitted: FittedLaw, x: Data, y: np.ndarray, steps: int) -> float:
    """Relative fall of the objective when the fit continues from its optimum for `steps` more L-BFGS-B steps."""
    more = fit_law(fitted.law, x, y, starts=fitted.theta[None, :], n_refine=1, max_iter=steps)
    return float((fitted.objective - more.objective) / fitted.objective) if fitted.objective > 0 else 0.0
