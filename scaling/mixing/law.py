"""Data mixing laws (Ye et al. 2024) over training-domain proportions r, as engine laws.

Per validation domain: L(r) = c + k exp(w . f(r)). The plain law uses f(r) = r (the paper's form); the
"log" law adds log(r_j + eps) features, so L is c + k exp(t.r) prod_j (r_j + eps)^u_j: loss can fall steeply as a
domain's share leaves zero, which the plain law cannot express. The implicit law fits a total loss as
bias + sum_k exp(a_k + t_k . r) over K latent domains (the paper's implicit aggregation).
Shares sum to 1, so only differences of the t's are identified: the last domain's t is pinned to 0, and k is the
reducible loss of a run on that domain alone (plain law). Fits run in batches (`fit_mixing_batch`: many columns
and cross-validation folds at once) by Levenberg-Marquardt from closed-form starts.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from threadpoolctl import threadpool_limits

from ladderlab.errors import LadderlabError
from ladderlab.scaling.engine.batch_fit import refine_batch, weighted_objective
from ladderlab.scaling.engine.law import Data, FittedLaw, Law, Param, check_data, fitted_at

EPS = 1e-3  # floor inside log(r + eps): RegMix-style data records shares to 3 decimals
FEATURES = ("linear", "log")


def features(r_NxM: np.ndarray, kind: str, eps: float = EPS) -> np.ndarray:
    """Exponent features: the shares but the last (whose t is 0), and for "log" also log(r + eps) of every share."""
    linear = r_NxM[:, :-1]
    return linear if kind == "linear" else np.hstack([linear, np.log(r_NxM + eps)])


def stack(x: Data, domains: Sequence[str]) -> np.ndarray:
    """Proportions as an N x M array, columns in domain order."""
    return np.stack([np.asarray(x[d], float) for d in domains], axis=1)


def mixture_rngs(seed: int, r_NxM: np.ndarray, stream: int = 0) -> list[np.random.Generator]:
    """A random generator per mixture (row of shares), seeded by the seed, the stream (one per kind of draw) and
    the shares: a mixture gets the same draws whenever it is asked for, alone or among others."""
    return [np.random.default_rng([seed, stream, *np.round(r * 1e6).astype(int)]) for r in r_NxM]


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

    def log_jacobian(self, theta_SxP: np.ndarray, x: Data) -> np.ndarray:
        """d log L / d theta at every point: S x P x N (c's share of L, then k's, then k's times each feature)."""
        f_NxF = features(stack(x, self.inputs), self.features, self.eps)
        c_SxN = np.exp(theta_SxP[:, :1])
        term_SxN = np.exp(theta_SxP[:, 1:2] + theta_SxP[:, 2:] @ f_NxF.T)
        share_SxN = term_SxN / (c_SxN + term_SxN)
        out = np.empty((len(theta_SxP), theta_SxP.shape[1], f_NxF.shape[0]))
        out[:, 0], out[:, 1] = 1.0 - share_SxN, share_SxN
        np.multiply(share_SxN[:, None, :], f_NxF.T[None], out=out[:, 2:])
        return out

    def starts(self, x: Data, y: np.ndarray) -> np.ndarray:
        """Closed-form starts: for c at fractions of min(y), least squares of log(y - c) on [1, f(r)]."""
        f_NxF = features(stack(x, self.inputs), self.features, self.eps)
        design = np.hstack([np.ones((len(y), 1)), f_NxF])
        c_S = np.array([0.3, 0.6, 0.8, 0.9, 0.95, 0.98]) * y.min()
        coef_PxS = np.linalg.lstsq(design, np.log(y[:, None] - c_S[None, :]), rcond=None)[0]  # one solve for all c
        lo, hi = self.bounds()
        return np.clip(np.column_stack([np.log(c_S), coef_PxS.T]), lo, hi)


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


MAX_ITER = 200  # batched Levenberg-Marquardt steps; on the 512 RegMix runs more change no held-out Spearman by 1e-3
RTOL = 1e-6  # converged: two steps in a row each lower the objective by less than this fraction (1e-9 gives
# the same held-out Spearman on the 512 RegMix runs to 1e-4 in 1.7x the time)
SETTLED = 1e-3  # a fit still not converged after MAX_ITER more steps that lowered its objective by less than this
# fraction has settled (on the 512 RegMix runs none needs them; degenerate fits to a few extrapolated losses do)
REFINED = {"mixing": 1, "mixing-implicit": 2}  # best closed-form starts refined per fit (a second start of the
# plain or log law changed no RegMix column's held-out Spearman by 1e-4; the implicit law's jittered starts differ)


def fit_mixing_batch(law: MixingLaw | ImplicitMixingLaw, x: Data, y_BxN: np.ndarray, w_BxN: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fit the law to B targets over the same mixtures at once, fit b on the rows where w_BxN[b] > 0 (weighted):
    the best closed-form starts of each fit (from its own rows), refined together by batched Levenberg-Marquardt
    (analytic derivatives for the plain and log laws). Returns (theta_BxP, objective_B, converged_B)."""
    with threadpool_limits(1):  # many small matrix products: threads cost more than they gain (5x on 2 cores)
        return _fit_batch(law, {d: np.asarray(v, float) for d, v in x.items()}, np.asarray(y_BxN, float),
                          np.asarray(w_BxN, float))


def _fit_batch(law: MixingLaw | ImplicitMixingLaw, x: Data, y_BxN: np.ndarray, w_BxN: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    keep = REFINED[law.name]
    fit_of, starts = [], []
    for b, (y, w) in enumerate(zip(y_BxN, w_BxN)):
        rows = w > 0
        x_b = {d: v[rows] for d, v in x.items()}
        check_data(law, x_b, y[rows], len(law.params))
        cand = law.starts(x_b, y[rows])
        with np.errstate(all="ignore"):
            r = np.log(law.predict_batch(cand, x_b)) - np.log(y[rows])
        score = weighted_objective(r, np.broadcast_to(w[rows], r.shape), law.loss, law.delta)
        starts += list(cand[np.argsort(score, kind="stable")[:keep]])
        fit_of += [b] * min(keep, len(cand))
    fit_of = np.array(fit_of)
    lo, hi = law.bounds()

    def log_pred(theta_SxP: np.ndarray) -> np.ndarray:
        return np.log(law.predict_batch(theta_SxP, x))

    jacobian = (lambda theta_SxP: law.log_jacobian(theta_SxP, x)) if isinstance(law, MixingLaw) else None
    def refine(theta_SxP: np.ndarray, fits: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return refine_batch(log_pred, theta_SxP, w_BxN[fits], lo, hi, law.loss, law.delta, MAX_ITER, RTOL,
                            np.log(y_BxN)[fits], jacobian)

    theta, value, done = refine(np.array(starts), fit_of)
    best = np.array([np.flatnonzero(fit_of == b)[np.argmin(value[fit_of == b])] for b in range(len(y_BxN))])
    theta, value, done = theta[best], value[best], done[best]
    stuck = np.flatnonzero(~done)
    if stuck.size:  # creeping along a flat valley (few runs, weakly determined exponents) is not stopping early
        more, after, _ = refine(theta[stuck], stuck)
        done[stuck] = after >= (1 - SETTLED) * value[stuck]
        theta[stuck], value[stuck] = more, after
    return theta, value, done


def fit_mixing(law: MixingLaw | ImplicitMixingLaw, x: Data, y: np.ndarray) -> FittedLaw:
    """Fit a mixing law to one loss column (`fit_mixing_batch` with one fit), with fit_law's diagnostics."""
    y = np.asarray(y, float)
    theta, value, done = fit_mixing_batch(law, x, y[None, :], np.ones((1, len(y))))
    return fitted_at(law, theta[0], value[0], x, y, bool(done[0]))
