"""Critical Mixture Ratio (Gu et al. 2024) for continual pre-training at a general:domain ratio.

General loss rises over its pre-CPT value `base` as a power law in the domain ratio r, the CPT tokens T and the
model size N: L_gen = base + A r^gamma (T/1e9)^s (N/1e9)^-nu. Domain loss falls with the domain tokens seen,
L_dom = E + B (r T/1e9 + T0)^-beta (per model size). The CMR for a tolerance eps on the general-loss increase is
the largest r with increase <= eps: (eps / (A (T/1e9)^s (N/1e9)^-nu))^(1/gamma), a power law in T and in N.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ladderlab.errors import LadderlabError
from ladderlab.scaling.api import fit
from ladderlab.scaling.engine.law import Data, FittedLaw, Law, Param, percentile_interval

SCALE = 1e9  # T and N enter as T/1e9 and N/1e9 so the fitted coefficients are O(1)


class GeneralLossLaw(Law):
    """L_gen = base + A r^gamma (T/1e9)^s (N/1e9)^-nu; Huber on log residuals of L_gen."""

    name = "cmr-general"
    inputs = ("base", "r", "T", "N")
    positive = ("base", "T", "N")  # r = 0 (pure general data) is a valid run
    params = (
        Param("A", True, -30.0, 10.0, (-6.0, -4.0, -2.0, 0.0)),
        Param("gamma", False, 0.05, 5.0, (0.5, 1.0, 2.0)),
        Param("s", False, -3.0, 3.0, (-0.5, 0.0, 0.5)),
        Param("nu", False, -3.0, 3.0, (0.0, 0.5)),
    )

    def predict_batch(self, theta_SxP: np.ndarray, x: Data) -> np.ndarray:
        a, gamma, s, nu = (theta_SxP[:, i : i + 1] for i in range(4))
        with np.errstate(divide="ignore"):
            log_r = np.log(x["r"])[None, :]
        z = a + gamma * log_r + s * np.log(x["T"] / SCALE)[None, :] - nu * np.log(x["N"] / SCALE)[None, :]
        return x["base"][None, :] + np.exp(z)


class DomainLossLaw(Law):
    """L_dom = E + B (r T/1e9 + T0)^-beta: domain loss falls with the domain tokens seen (T0: prior exposure)."""

    name = "cmr-domain"
    inputs = ("r", "T")
    positive = ("T",)
    params = (
        Param("E", True, -5.0, 3.0, (-1.0, 0.0, 0.5)),
        Param("B", True, -10.0, 10.0, (-2.0, 0.0, 2.0)),
        Param("beta", False, 0.01, 3.0, (0.2, 0.5, 1.0)),
        Param("T0", True, -12.0, 5.0, (-6.0, -3.0, 0.0)),
    )

    def predict_batch(self, theta_SxP: np.ndarray, x: Data) -> np.ndarray:
        e, b, beta, t0 = (theta_SxP[:, i : i + 1] for i in range(4))
        seen = x["r"][None, :] * x["T"][None, :] / SCALE + np.exp(t0)
        return np.exp(e) + np.exp(b - beta * np.log(seen))


def increase_of(public: dict[str, float], ratio: Any, tokens: Any, size: Any) -> np.ndarray:
    """Predicted general-loss increase A r^gamma (T/1e9)^s (N/1e9)^-nu."""
    scale = public["A"] * (np.asarray(tokens, float) / SCALE) ** public["s"] * (np.asarray(size, float) / SCALE) ** -public["nu"]
    return scale * np.asarray(ratio, float) ** public["gamma"]


def cmr_of(public: dict[str, float], tolerance: float, tokens: Any, size: Any) -> np.ndarray:
    """The largest ratio whose predicted general-loss increase stays within tolerance, capped at 1."""
    return np.minimum((tolerance / increase_of(public, 1.0, tokens, size)) ** (1.0 / public["gamma"]), 1.0)


@dataclass
class CMRResult:
    """CMR at (tokens, size) with its bootstrap interval, the losses there, and how CMR scales with T and N."""

    ratio: float
    interval: tuple[float, float]
    tokens: float
    size: float | None
    tolerance: float
    general_increase: float
    domain_loss: float | None
    token_exponent: float
    size_exponent: float | None
    curve: list[dict[str, float]]
    general: FittedLaw
    domain: dict[float, FittedLaw] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "ratio": self.ratio, "interval": list(self.interval), "tokens": self.tokens, "size": self.size,
            "tolerance": self.tolerance, "general_increase": self.general_increase, "domain_loss": self.domain_loss,
            "token_exponent": self.token_exponent, "size_exponent": self.size_exponent, "curve": self.curve,
            "general_law": self.general.to_json(),
            "domain_laws": {f"{n:g}": f.to_json() for n, f in self.domain.items()},
        }


def critical_mixture_ratio(
    ratio: Any,
    tokens: Any,
    general_loss: Any,
    base_loss: Any,
    *,
    tolerance: float,
    size: Any = None,
    domain_loss: Any = None,
    at_tokens: float | None = None,
    at_size: float | None = None,
    bootstrap: int = 200,
    level: float = 0.9,
    seed: int = 0,
) -> CMRResult:
    """Fit the CPT laws to runs (domain ratio, CPT tokens, general loss, its pre-CPT value, optional model size and
    domain loss) and return the CMR for an absolute tolerance on general-loss increase at (at_tokens, at_size).

    Defaults: the largest tokens and size among the runs. With one model size the size exponent is not fitted.
    """
    r, t, gen, base = (np.asarray(v, float) for v in (ratio, tokens, general_loss, base_loss))
    if tolerance <= 0:
        raise LadderlabError(f"tolerance {tolerance}: must be > 0 (an absolute increase of general loss)")
    bad = np.flatnonzero((r < 0) | (r > 1) | ~np.isfinite(r))
    if bad.size:
        raise LadderlabError(f"ratio {r[bad[0]]} at row {bad[0]} is not a domain share in [0, 1]")
    n = np.full_like(r, SCALE) if size is None else np.asarray(size, float)
    sizes = np.unique(n)
    fixed = {"nu": 0.0} if len(sizes) == 1 else None
    if fixed and at_size is not None and at_size != sizes[0]:
        raise LadderlabError(f"at_size {at_size:g}: runs of one model size ({sizes[0]:g}) cannot say how CMR moves with size")
    x = {"base": base, "r": r, "T": t, "N": n}
    general = fit(GeneralLossLaw(), x, gen, fixed=fixed, bootstrap=bootstrap, seed=seed)
    at_t = float(t.max() if at_tokens is None else at_tokens)
    at_n = float(n.max() if at_size is None else at_size)
    p = general.params
    value = float(cmr_of(p, tolerance, at_t, at_n))
    samples = np.array([cmr_of(general.law.to_public(b), tolerance, at_t, at_n) for b in general.boot_BxP]) if bootstrap else None
    lo, hi = (value, value) if samples is None else map(float, percentile_interval(samples, level))
    increase = float(increase_of(p, value, at_t, at_n))
    domain = {}
    if domain_loss is not None:
        dom = np.asarray(domain_loss, float)
        for size_n in sizes:
            rows = n == size_n
            domain[float(size_n)] = fit(DomainLossLaw(), {"r": r[rows], "T": t[rows]}, dom[rows])
    dom_fit = domain.get(at_n)
    domain_at = None if dom_fit is None else float(dom_fit.predict(r=value, T=at_t)[0])
    grid = np.geomspace(t.min(), max(at_t, t.max()) * 4, 9)
    curve = []
    for tk in grid:
        row = {"tokens": float(tk), "ratio": float(cmr_of(p, tolerance, tk, at_n))}
        if samples is not None:
            boot = np.array([cmr_of(general.law.to_public(b), tolerance, tk, at_n) for b in general.boot_BxP])
            row["ratio_lo"], row["ratio_hi"] = map(float, percentile_interval(boot, level))
        curve.append(row)
    return CMRResult(
        value, (lo, hi), at_t, None if size is None else at_n, tolerance, increase, domain_at,
        -p["s"] / p["gamma"], None if fixed else p["nu"] / p["gamma"], curve, general, domain,
    )
