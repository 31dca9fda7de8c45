"""Optimal mixtures: minimise a mixing model's predicted loss over the simplex under share limits and token budgets.

`optimize_mixture` optimises a fitted MixingModel; `predict_mixture` fits one to runs first; `optimize_scaling`
optimises a mixture-scaling law at one run's (N, D) and judges the optimum against the law's draws. A domain with U
unique tokens in a run of D tokens may not be repeated past K epochs (share <= K U / D), and below that cap its repeated
tokens are priced by the data-constrained law (Muennighoff et al.): the share the mixing law sees is D'/D with
D' = U + U R* (1 - exp(-(rD/U - 1)/R*)), so a repeated domain is worth less than fresh data of the same share.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np
from scipy.optimize import minimize
from threadpoolctl import threadpool_limits

from ladderlab.errors import LadderlabError
from ladderlab.scaling.engine.law import percentile_interval
from ladderlab.scaling.laws.data_constrained import PUBLISHED_R, effective
from ladderlab.scaling.mixing.model import MixingModel, fit_mixing_model, target_weights
from ladderlab.scaling.mixing.separation import FLIP, separation, significance
from ladderlab.scaling.mixing.table import check_proportions

if TYPE_CHECKING:
    from ladderlab.scaling.mixing.mixture_scaling import MixtureScaling

Loss = Callable[[np.ndarray], np.ndarray]  # N x M shares -> N predicted losses


@dataclass(frozen=True)
class Limits:
    """Per-domain share bounds, and optionally unique tokens per domain with the run's tokens and epoch cap."""

    lo: np.ndarray
    hi: np.ndarray
    unique: np.ndarray | None = None
    tokens: float | None = None
    epochs: float = 4.0
    r_star: float = PUBLISHED_R["R_D*"]


def make_limits(
    domains: Sequence[str],
    lo: Mapping[str, float] | None = None,
    hi: Mapping[str, float] | None = None,
    budget: Mapping[str, float] | None = None,
    tokens: float | None = None,
    epochs: float = 4.0,
) -> Limits:
    """Limits from per-domain dicts; a budget (unique tokens per domain) needs the run's token count."""
    for name, given in (("--min", lo), ("--max", hi), ("--budget", budget)):
        unknown = sorted(set(given or {}) - set(domains))
        if unknown:
            raise LadderlabError(f"{name}: unknown domain(s) {', '.join(unknown)} (known: {', '.join(domains)})")
    lo_m = np.array([float((lo or {}).get(d, 0.0)) for d in domains])
    hi_m = np.array([float((hi or {}).get(d, 1.0)) for d in domains])
    unique = None
    if budget:
        if not tokens or tokens <= 0:
            raise LadderlabError("--budget needs the run's token count (--tokens D > 0)")
        if epochs <= 0:
            raise LadderlabError(f"--epochs {epochs}: must be > 0")
        unique = np.array([float(budget.get(d, np.inf)) for d in domains])
        bad = np.flatnonzero(unique <= 0)
        if bad.size:
            raise LadderlabError(f"--budget {domains[bad[0]]}={unique[bad[0]]}: unique tokens must be > 0")
        hi_m = np.minimum(hi_m, epochs * unique / tokens)
    for j, d in enumerate(domains):
        if not 0.0 <= lo_m[j] <= hi_m[j] + 1e-12:
            raise LadderlabError(f"domain {d}: min share {lo_m[j]:.4g} exceeds its max share {hi_m[j]:.4g}")
    if lo_m.sum() > 1 + 1e-9 or hi_m.sum() < 1 - 1e-9:
        raise LadderlabError(f"no feasible mixture: min shares sum to {lo_m.sum():.4g}, max shares to {hi_m.sum():.4g}")
    return Limits(lo_m, hi_m, unique, tokens, epochs)


def effective_shares(r_NxM: np.ndarray, limits: Limits) -> np.ndarray:
    """Shares the mixing law sees: repeated tokens discounted by the data-constrained law (no budget: r itself)."""
    if limits.unique is None:
        return r_NxM
    seen = r_NxM * limits.tokens
    with np.errstate(divide="ignore", invalid="ignore"):
        repeated = effective(limits.unique, np.maximum(seen, limits.unique), limits.r_star) / limits.tokens
    return np.where(seen <= limits.unique, r_NxM, repeated)


def project(v: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Euclidean projection onto {sum r = 1, lo <= r <= hi}: r = clip(v - tau, lo, hi), tau by bisection."""
    a, b = np.min(v - hi) - 1.0, np.max(v - lo) + 1.0
    for _ in range(100):
        tau = 0.5 * (a + b)
        if np.clip(v - tau, lo, hi).sum() > 1.0:
            a = tau
        else:
            b = tau
    return np.clip(v - 0.5 * (a + b), lo, hi)


def optimize_shares(loss: Loss, limits: Limits, seeds: np.ndarray | None = None, n_random: int = 64, seed: int = 0) -> tuple[np.ndarray, float]:
    """Minimise loss(effective_shares(r)) over the constrained simplex: screen random and given starting mixtures,
    then refine the 4 best with SLSQP. Returns the shares and the predicted loss."""
    m = len(limits.lo)
    rng = np.random.default_rng(seed)
    raw = [np.full(m, 1.0 / m), *rng.dirichlet(np.full(m, 0.5), n_random)]
    if seeds is not None:
        raw.extend(np.atleast_2d(seeds))
    starts = np.array([project(v, limits.lo, limits.hi) for v in raw])

    def f(r_NxM: np.ndarray) -> np.ndarray:
        with np.errstate(all="ignore"):
            val = loss(effective_shares(np.clip(r_NxM, limits.lo, limits.hi), limits))
        return np.where(np.isfinite(val), val, np.inf)

    screened = f(starts)
    best_r, best_v = starts[np.argmin(screened)], float(np.min(screened))
    constraint = {"type": "eq", "fun": lambda r: r.sum() - 1.0, "jac": lambda r: np.ones_like(r)}
    with threadpool_limits(1):
        for i in np.argsort(screened)[:4]:
            res = minimize(lambda r: float(f(r[None, :])[0]), starts[i], method="SLSQP",
                           bounds=list(zip(limits.lo, limits.hi)), constraints=[constraint],
                           options={"maxiter": 500, "ftol": 1e-12})
            r = project(res.x, limits.lo, limits.hi)
            v = float(f(r[None, :])[0])
            if v < best_v:
                best_r, best_v = r, v
    return best_r, best_v


@dataclass
class MixturePrediction:
    """The optimal shares, the predicted target and per-column losses there, with held-out-error intervals."""

    ratios: dict[str, float]
    target: dict[str, float]
    loss: float
    interval: tuple[float, float]
    losses: dict[str, float]
    intervals: dict[str, tuple[float, float]]
    model: MixingModel | None  # None for a mixture-scaling law
    warnings: list[str]
    significance: dict[str, Any] | None = None  # mixture-scaling: the optimum's gain against reference mixtures
    separation: dict[str, Any] | None = None  # mixture-scaling: are the fitted mixtures told apart at the target

    def to_json(self) -> dict[str, Any]:
        doc = {"ratios": self.ratios, "target": self.target, "loss": self.loss, "interval": list(self.interval),
               "losses": self.losses, "intervals": {c: list(v) for c, v in self.intervals.items()},
               "warnings": self.warnings}
        extra = {"significance": self.significance, "separation": self.separation}
        return {**doc, **{k: v for k, v in extra.items() if v is not None}}


def _beyond(ratios: Mapping[str, float], share_max: Mapping[str, float]) -> list[str]:
    return [f"{d}: share {v:.3g} is beyond the largest share seen in the fit ({share_max[d]:.3g}); "
            "the law extrapolates there" for d, v in ratios.items() if v > share_max.get(d, 1.0) + 1e-9]


def optimize_mixture(
    model: MixingModel,
    target: str | Mapping[str, float] | None = None,
    min: Mapping[str, float] | None = None,  # noqa: A002 - the user-facing names of the share limits
    max: Mapping[str, float] | None = None,  # noqa: A002
    budget: Mapping[str, float] | None = None,
    tokens: float | None = None,
    epochs: float = 4.0,
    level: float = 0.9,
    seed: int = 0,
) -> MixturePrediction:
    """Minimise the target (one column, column weights, or the mean of all columns) under the given limits.

    A domain's share stays within the largest share seen in the fitted runs unless `max` raises it: beyond the
    data the law extrapolates, and an optimiser finds any spurious dip there.
    """
    weights = model.weights(target)
    limits = make_limits(model.domains, min, {**model.share_max, **(max or {})}, budget, tokens, epochs)
    r, value = optimize_shares(lambda r_NxM: model.predict_target(r_NxM, weights), limits, seed=seed)
    seen = effective_shares(r[None, :], limits)
    x = dict(zip(model.domains, seen.T))
    losses = {c: float(v[0]) for c, v in model.predict(x).items()}
    intervals = {c: tuple(float(b[0]) for b in model.interval(np.array([losses[c]]), {c: 1.0}, level)) for c in losses}
    lo, hi = model.interval(np.array([value]), weights, level)
    ratios = dict(zip(model.domains, map(float, r)))
    return MixturePrediction(ratios, weights, value, (float(lo[0]), float(hi[0])), losses, intervals, model,
                             _beyond(ratios, model.share_max))


def optimize_scaling(
    law: MixtureScaling,
    at: dict[str, float],
    target: str | Mapping[str, float] | None = None,
    min: Mapping[str, float] | None = None,  # noqa: A002
    max: Mapping[str, float] | None = None,  # noqa: A002
    budget: Mapping[str, float] | None = None,
    epochs: float = 4.0,
    level: float = 0.9,
    seed: int = 0,
) -> MixturePrediction:
    """The mixture minimising a mixture-scaling law's target for the run at = {"N": ..., "D": ...} (D: its tokens).

    Its intervals are for one run at the optimum (the law's draws times a run's scatter); judged against the law's
    draws: the optimum is "not significant" when its gain over equal shares or over the best
    fitted mixture is not positive in more than 10% of them, and the fitted mixtures' separation at the target is
    reported (scaling.mixing.separation)."""
    model, columns = law.at(at["N"], at["D"]), law.targets
    weights = target_weights(target, columns)
    limits = make_limits(law.domains, min, {**law.share_max, **(max or {})}, budget, at["D"], epochs)
    r, value = optimize_shares(lambda r_NxM: sum(w * model.point(r_NxM)[c] for c, w in weights.items()), limits,
                               seeds=law.mixtures, seed=seed)
    m = len(law.domains)
    rows = effective_shares(np.vstack([r, np.full(m, 1.0 / m), law.mixtures]), limits)
    point, draws = model.point(rows), model.draws(rows)
    total = sum(w * point[c] for c, w in weights.items())
    ratios = dict(zip(law.domains, map(float, r)))
    if draws is None:
        nan = (float("nan"), float("nan"))
        return MixturePrediction(ratios, weights, value, nan, {c: float(v[0]) for c, v in point.items()},
                                 {c: nan for c in point}, None, _beyond(ratios, law.share_max) + model.warnings)
    total_draws = sum(w * draws[c] for c, w in weights.items())
    noise = model.run_noise(rows[:1], len(total_draws))  # the intervals are for one run at the optimum
    run = {c: d[:, :1] * np.exp(noise[c]) for c, d in draws.items()}
    intervals = {c: tuple(float(b[0]) for b in percentile_interval(d, level)) for c, d in run.items()}
    lo, hi = percentile_interval(sum(w * run[c] for c, w in weights.items()), level)
    best = 2 + int(np.argmin(total[2:]))
    sig = significance(value, total_draws[:, 0], {"equal shares": (float(total[1]), total_draws[:, 1]),
                                                  "best fitted mixture": (float(total[best]), total_draws[:, best])})
    sig["best_fitted_mixture"] = dict(zip(law.domains, map(float, law.mixtures[best - 2])))
    names = [_mixture_name(law.domains, v) for v in law.mixtures]
    sep = separation(names, total[2:], total_draws[:, 2:])
    warnings = _beyond(ratios, law.share_max) + model.warnings
    if not sig["significant"]:
        worst = sorted(sig["against"].items(), key=lambda kv: kv[1]["flip_share"])[-1]  # max is a parameter here
        warnings.append(f"optimum not significant: its gain over {worst[0]} ({worst[1]['gain']:.4g}) is not positive "
                        f"in {worst[1]['flip_share']:.0%} of the draws (over {FLIP:.0%}: inside the noise)")
    return MixturePrediction(ratios, weights, value, (float(lo[0]), float(hi[0])),
                             {c: float(v[0]) for c, v in point.items()}, intervals, None, warnings, sig, sep)


def _mixture_name(domains: Sequence[str], r: np.ndarray) -> str:
    return ",".join(f"{d}={v:.3g}" for d, v in zip(domains, r))


def predict_mixture(
    mixtures: Mapping[str, Any],
    losses: Mapping[str, Any],
    *,
    target: str | Mapping[str, float] | None = None,
    model: str = "auto",
    min: Mapping[str, float] | None = None,  # noqa: A002
    max: Mapping[str, float] | None = None,  # noqa: A002
    budget: Mapping[str, float] | None = None,
    tokens: float | None = None,
    epochs: float = 4.0,
    level: float = 0.9,
    seed: int = 0,
) -> MixturePrediction:
    """Fit mixing laws to runs (mixtures: domain -> shares per run; losses: column -> loss per run), then optimise.

    Example: predict_mixture({"web": w, "code": c}, {"val_web": l}, target="val_web", max={"code": 0.3})
    """
    props = {d: np.asarray(v, float) for d, v in mixtures.items()}
    check_proportions(props, "mixtures")
    fitted = fit_mixing_model(props, {c: np.asarray(v, float) for c, v in losses.items()}, model, seed=seed)
    return optimize_mixture(fitted, target, min, max, budget, tokens, epochs, level, seed)
