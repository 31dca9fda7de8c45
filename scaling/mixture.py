"""Library entry points for mixture ratios: fit mixing laws to runs and return the best mixture with its losses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from ladderlab.scaling.mixing import MixingModel, fit_mixing_model
from ladderlab.scaling.mixture_opt import effective_shares, make_limits, optimize_shares
from ladderlab.scaling.mixture_table import check_proportions


@dataclass
class MixturePrediction:
    """The optimal shares, the predicted target and per-column losses there, with held-out-error intervals."""

    ratios: dict[str, float]
    target: dict[str, float]
    loss: float
    interval: tuple[float, float]
    losses: dict[str, float]
    intervals: dict[str, tuple[float, float]]
    model: MixingModel
    warnings: list[str]

    def to_json(self) -> dict[str, Any]:
        return {"ratios": self.ratios, "target": self.target, "loss": self.loss, "interval": list(self.interval),
                "losses": self.losses, "intervals": {c: list(v) for c, v in self.intervals.items()},
                "warnings": self.warnings}


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
    warnings = [f"{d}: share {v:.3g} is beyond the largest share seen in the fit ({model.share_max[d]:.3g}); "
                "the law extrapolates there" for d, v in ratios.items() if v > model.share_max.get(d, 1.0) + 1e-9]
    return MixturePrediction(ratios, weights, value, (float(lo[0]), float(hi[0])), losses, intervals, model, warnings)


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
