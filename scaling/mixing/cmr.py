"""Critical Mixture Ratio (Gu et al. 2024) for continual pre-training (CPT) at a domain share r of the CPT mixture.

The general (pre-training) validation loss is written as its pre-CPT value `base` plus a change that can fall as
well as rise (t = T/1e9 CPT tokens, n = N/1e9 parameters), in one of two forms:
- power: base + A r^gamma t^s n^-nu - G t^q (G of either sign: the replayed data's own progress and annealing);
- cpt:   base + A ((P + t)^-alpha - P^-alpha) + B r^gamma (1 - (1 + E t)^-beta) n^-nu, the CPT law (Wang, Tissue
  et al. 2025) at a constant CPT rate: continued pre-training from forward area P plus a distribution shift.
The domain loss per size is power: E + B (r t + T0)^-beta, or cpt: E + A (P + t)^-alpha + B r^gamma (1 - (1 + K t)^-beta)
(B of either sign). `form="auto"` picks each by held-out error over runs.

The tolerance is the allowed change of the general loss at the target length: 0 means no worse than before CPT, a
negative value at least |tol| better. The CMR is the largest share r such that every share up to r meets it (0, with
a warning, if even r = 0 does not; 1 if all do). Bootstrap replicates resample whole runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from ladderlab.errors import LadderlabError
from ladderlab.scaling.api import fit
from ladderlab.scaling.engine.bootstrap import bootstrap as run_bootstrap
from ladderlab.scaling.engine.held_out import held_out_rmse
from ladderlab.scaling.engine.law import Data, FittedLaw, Law, Param, percentile_interval
from ladderlab.scaling.laws.cpt import cpt_areas, load_cpt_law, pre_cpt_loss, pt_schedule

SCALE = 1e9  # T and N enter as T/1e9 and N/1e9 so the fitted coefficients are O(1)
SHARES = np.linspace(0.0, 1.0, 2001)  # the shares the CMR search walks up


def _log(v: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.log(v)


class GeneralPowerLaw(Law):
    """L_gen = base + A r^gamma t^s n^-nu - G t^q; Huber on log residuals of L_gen."""

    name = "cmr-general"
    inputs = ("base", "r", "T", "N")
    positive = ("base", "T", "N")  # r = 0 (pure general data) is a valid run
    params = (
        Param("A", True, -30.0, 10.0, (-6.0, -4.0, -2.0, 0.0)),
        Param("gamma", False, 0.05, 5.0, (0.5, 1.0, 2.0)),
        Param("s", False, -3.0, 3.0, (-0.5, 0.0, 0.5)),
        Param("nu", False, -3.0, 3.0, (0.0, 0.5)),
        Param("G", False, -10.0, 10.0, (0.0, 0.02, 0.1)),
        Param("q", False, -3.0, 3.0, (0.2, 0.6)),
    )

    def predict_batch(self, theta_SxP: np.ndarray, x: Data) -> np.ndarray:
        a, gamma, s, nu, g, q = (theta_SxP[:, i : i + 1] for i in range(6))
        log_t = np.log(x["T"] / SCALE)[None, :]
        z = a + gamma * _log(x["r"])[None, :] + s * log_t - nu * np.log(x["N"] / SCALE)[None, :]
        return x["base"][None, :] + np.exp(z) - g * np.exp(q * log_t)


class GeneralCPTLaw(Law):
    """L_gen = base + A ((P + t)^-alpha - P^-alpha) + B r^gamma (1 - (1 + E t)^-beta) n^-nu."""

    name = "cmr-general-cpt"
    inputs = ("base", "r", "T", "N")
    positive = ("base", "T", "N")
    params = (
        Param("A", True, -15.0, 10.0, (-2.0, 0.0)),
        Param("alpha", False, 0.0, 4.0, (0.3, 0.6)),
        Param("P", True, -10.0, 10.0, (-1.0, 1.0, 3.0)),
        Param("B", True, -15.0, 5.0, (-4.0, -2.0, 0.0)),
        Param("gamma", False, 0.05, 5.0, (1.0,)),
        Param("E", True, -10.0, 10.0, (-1.0, 1.0)),
        Param("beta", False, 0.01, 5.0, (0.5, 1.0)),
        Param("nu", False, -3.0, 3.0, (0.0,)),
    )

    def predict_batch(self, theta_SxP: np.ndarray, x: Data) -> np.ndarray:
        a, alpha, p, b, gamma, e, beta, nu = (theta_SxP[:, i : i + 1] for i in range(8))
        t = (x["T"] / SCALE)[None, :]
        anneal = np.exp(a) * (np.exp(-alpha * np.log(np.exp(p) + t)) - np.exp(-alpha * p))
        shift = np.exp(b + gamma * _log(x["r"])[None, :] - nu * np.log(x["N"] / SCALE)[None, :])
        return x["base"][None, :] + anneal + shift * (1.0 - np.exp(-beta * np.log1p(np.exp(e) * t)))


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


class DomainCPTLaw(Law):
    """L_dom = E + A (P + t)^-alpha + B r^gamma (1 - (1 + K t)^-beta), B of either sign: it can rise or fall."""

    name = "cmr-domain-cpt"
    inputs = ("r", "T")
    positive = ("T",)
    params = (
        Param("E", True, -5.0, 3.0, (-1.0, 0.0, 0.5)),
        Param("A", True, -15.0, 10.0, (-2.0, 0.0)),
        Param("alpha", False, 0.0, 4.0, (0.5,)),
        Param("P", True, -10.0, 10.0, (0.0, 2.0)),
        Param("B", False, -10.0, 10.0, (-0.3, 0.1)),
        Param("gamma", False, 0.05, 5.0, (1.0,)),
        Param("K", True, -10.0, 10.0, (0.0, 2.0)),
        Param("beta", False, 0.01, 5.0, (0.5,)),
    )

    def predict_batch(self, theta_SxP: np.ndarray, x: Data) -> np.ndarray:
        e, a, alpha, p, b, gamma, k, beta = (theta_SxP[:, i : i + 1] for i in range(8))
        t = (x["T"] / SCALE)[None, :]
        shift = b * np.exp(gamma * _log(x["r"])[None, :]) * (1.0 - np.exp(-beta * np.log1p(np.exp(k) * t)))
        return np.exp(e) + np.exp(a - alpha * np.log(np.exp(p) + t)) + shift


GENERAL = {"power": GeneralPowerLaw, "cpt": GeneralCPTLaw}
DOMAIN = {"power": DomainLossLaw, "cpt": DomainCPTLaw}
LAWS = {cls.name: cls for cls in (*GENERAL.values(), *DOMAIN.values())}


def change_of(law: Law, theta_SxP: np.ndarray, ratio: Any, tokens: float, size: float) -> np.ndarray:
    """Predicted change of general loss (S x len(ratio)) at the given shares, CPT tokens and size."""
    r = np.atleast_1d(np.asarray(ratio, float))
    x = {"base": np.zeros_like(r), "r": r, "T": np.full_like(r, tokens), "N": np.full_like(r, size)}
    return law.predict_batch(np.atleast_2d(theta_SxP), x)


def largest_share(change_SxG: np.ndarray, tolerance: float, shares: np.ndarray = SHARES) -> np.ndarray:
    """Per row, the largest share such that the change meets the tolerance at every share up to it (linear between
    the grid's shares at the first one that fails; 0 if the first fails, 1 if none does)."""
    fails = ~(change_SxG <= tolerance)
    first = np.where(fails.any(axis=1), fails.argmax(axis=1), len(shares))
    out = np.where(first >= len(shares), 1.0, 0.0)
    mid = (first > 0) & (first < len(shares))
    rows, k = np.flatnonzero(mid), first[mid]
    lo_c, hi_c = change_SxG[rows, k - 1], change_SxG[rows, k]
    frac = np.where(np.isfinite(hi_c), (tolerance - lo_c) / (hi_c - lo_c), 0.0)
    out[rows] = shares[k - 1] + np.clip(frac, 0.0, 1.0) * (shares[k] - shares[k - 1])
    return out


@dataclass
class CMRResult:
    """CMR at (tokens, size) with its bootstrap interval, the losses there, the forms chosen and the fitted laws."""

    ratio: float
    interval: tuple[float, float]
    tokens: float
    size: float | None
    tolerance: float
    general_increase: float
    domain_loss: float | None
    curve: list[dict[str, float]]
    form: str
    held_out: dict[str, float]
    general: FittedLaw
    laws: dict[str, FittedLaw]
    base: dict[float, float]
    domain_form: str | None = None
    domain: dict[float, FittedLaw] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    level: float = 0.9

    def to_json(self) -> dict[str, Any]:
        return {
            "ratio": self.ratio, "interval": list(self.interval), "tokens": self.tokens, "size": self.size,
            "tolerance": self.tolerance, "general_increase": self.general_increase, "domain_loss": self.domain_loss,
            "curve": self.curve, "form": self.form, "held_out_rmse": self.held_out, "level": self.level,
            "base_losses": {f"{n:g}": v for n, v in self.base.items()}, "warnings": self.warnings,
            "general_laws": {f: law.to_json() for f, law in self.laws.items()},
            "domain_form": self.domain_form,
            "domain_laws": {f"{n:g}": f.to_json() for n, f in self.domain.items()},
        }


def run_ids(ratio: np.ndarray, size: np.ndarray, runs: Any = None) -> np.ndarray:
    """Each row's run: the given ids, else one run per (share, size)."""
    if runs is not None:
        return np.asarray(runs).astype(str)
    return np.array([f"{r:.12g}@{n:.6g}" for r, n in zip(ratio, size)])


def _choose(forms: Mapping[str, type], form: str, x: Data, y: np.ndarray, groups: np.ndarray,
            fixed: Mapping[str, float] | None, seed: int) -> tuple[str, dict[str, float]]:
    if form != "auto":
        if form not in forms:
            raise LadderlabError(f"form {form!r}: known forms are auto, {', '.join(forms)}")
        return form, {}
    errors = {f: held_out_rmse(cls(), x, y, groups, _fixed_for(cls(), fixed), seed) for f, cls in forms.items()}
    finite = {f: e for f, e in errors.items() if np.isfinite(e)}
    return (min(finite, key=finite.get) if finite else next(iter(forms))), errors


def _fixed_for(law: Law, fixed: Mapping[str, float] | None) -> dict[str, float] | None:
    return None if not fixed else {k: v for k, v in fixed.items() if k in law.names} or None


def critical_mixture_ratio(
    ratio: Any,
    tokens: Any,
    general_loss: Any,
    base_loss: Any,
    *,
    tolerance: float,
    size: Any = None,
    domain_loss: Any = None,
    runs: Any = None,
    at_tokens: float | None = None,
    at_size: float | None = None,
    form: str = "auto",
    bootstrap: int = 200,
    level: float = 0.9,
    seed: int = 0,
) -> CMRResult:
    """Fit the CPT laws to checkpoints of CPT runs (domain share, CPT tokens, general loss, its pre-CPT value,
    optional model size, domain loss and run ids) and return the CMR for `tolerance` at (at_tokens, at_size).

    Defaults: the largest tokens and size among the runs. With one model size the size exponent is not fitted.
    """
    r, t, gen, base = (np.asarray(v, float) for v in (ratio, tokens, general_loss, base_loss))
    if not np.isfinite(tolerance):
        raise LadderlabError(f"tolerance {tolerance}: must be a finite change of general loss")
    bad = np.flatnonzero((r < 0) | (r > 1) | ~np.isfinite(r))
    if bad.size:
        raise LadderlabError(f"ratio {r[bad[0]]} at row {bad[0]} is not a domain share in [0, 1]")
    n = np.full_like(r, SCALE) if size is None else np.asarray(size, float)
    sizes = np.unique(n)
    fixed = {"nu": 0.0} if len(sizes) == 1 else None
    if fixed and at_size is not None and at_size != sizes[0]:
        raise LadderlabError(f"at_size {at_size:g}: runs of one model size ({sizes[0]:g}) cannot say how CMR moves with size")
    groups = run_ids(r, n, runs)
    x = {"base": base, "r": r, "T": t, "N": n}
    chosen, held_out = _choose(GENERAL, form, x, gen, groups, fixed, seed)
    laws = {f: fit(cls(), x, gen, fixed=_fixed_for(cls(), fixed)) for f, cls in GENERAL.items()
            if form == "auto" or f == chosen}
    general = laws[chosen]
    if bootstrap:
        run_bootstrap(general, x, gen, n=bootstrap, seed=seed, groups=groups, fixed=_fixed_for(general.law, fixed),
                      warm=True)
    at_t = float(t.max() if at_tokens is None else at_tokens)
    at_n = float(n.max() if at_size is None else at_size)

    def cmr_at(tk: float) -> tuple[float, tuple[float, float]]:
        value = float(largest_share(change_of(general.law, general.theta, SHARES, tk, at_n), tolerance)[0])
        if general.boot_BxP is None:
            return value, (value, value)
        ok = np.isfinite(general.boot_BxP).all(axis=1)
        samples = largest_share(change_of(general.law, general.boot_BxP[ok], SHARES, tk, at_n), tolerance)
        lo, hi = percentile_interval(samples, level)
        return value, (float(lo), float(hi))

    value, interval = cmr_at(at_t)
    warnings = []
    if change_of(general.law, general.theta, 0.0, at_t, at_n)[0, 0] > tolerance:
        warnings.append(f"no domain share meets tolerance {tolerance:g} at T = {at_t:.4g}: even r = 0 changes the "
                        f"general loss by {change_of(general.law, general.theta, 0.0, at_t, at_n)[0, 0]:+.4g}; CMR = 0")
    increase = float(change_of(general.law, general.theta, value, at_t, at_n)[0, 0])
    domain, domain_form = {}, None
    if domain_loss is not None:
        dom = np.asarray(domain_loss, float)
        domain_form, errs = _choose(DOMAIN, form, {"r": r, "T": t}, dom, groups, None, seed)
        held_out.update({f"domain-{f}": e for f, e in errs.items()})
        for size_n in sizes:
            rows = n == size_n
            x_dom = {"r": r[rows], "T": t[rows]}
            domain[float(size_n)] = fitted = fit(DOMAIN[domain_form](), x_dom, dom[rows])
            if bootstrap:
                run_bootstrap(fitted, x_dom, dom[rows], n=bootstrap, seed=seed, groups=groups[rows], warm=True)
    dom_fit = domain.get(at_n)
    domain_at = None if dom_fit is None else float(dom_fit.predict(r=value, T=at_t)[0])
    curve = []
    for tk in np.geomspace(t.min(), max(at_t, t.max()) * 4, 9):
        v, (lo, hi) = cmr_at(float(tk))
        curve.append({"tokens": float(tk), "ratio": v, **({"ratio_lo": lo, "ratio_hi": hi} if bootstrap else {})})
    base_of = {float(s): float(np.mean(base[n == s])) for s in sizes}
    return CMRResult(value, interval, at_t, None if size is None else at_n, tolerance, increase, domain_at, curve,
                     chosen, held_out, general, laws, base_of, domain_form, domain, warnings, level)


def _band(fitted: FittedLaw, x: dict[str, Any], level: float, offset: float = 0.0) -> dict[str, float]:
    loss = float(fitted.predict(**x)[0]) + offset
    if fitted.boot_BxP is None:
        return {"loss": loss, "lo": loss, "hi": loss}
    lo, hi = fitted.interval(level, **x)
    return {"loss": loss, "lo": float(lo[0]) + offset, "hi": float(hi[0]) + offset}


def predict_cpt_loss(doc: Mapping[str, Any], ratio: float, tokens: float, size: float | None = None) -> dict[str, Any]:
    """General (and domain) loss with its interval for a CPT run at share `ratio` and `tokens`, from the JSON that
    `CMRResult.to_json` wrote (size: default the largest fitted size)."""
    if not 0 <= ratio <= 1:
        raise LadderlabError(f"--ratio {ratio:g}: a domain share must be in [0, 1]")
    bases = {float(k): v for k, v in doc["base_losses"].items()}
    n = max(bases) if size is None else float(size)
    if n not in bases:
        raise LadderlabError(f"size {n:g}: no pre-CPT loss for it (fitted sizes: {', '.join(f'{s:g}' for s in bases)})")
    level = float(doc.get("level", 0.9))
    form = doc["form"]
    law_doc = doc["general_laws"][form]
    general = FittedLaw.from_json(GENERAL[form](), law_doc)
    out = {"general": _band(general, {"base": 0.0, "r": ratio, "T": tokens, "N": n}, level, bases[n]),
           "domain": None, "form": form, "level": level, "ratio": ratio, "tokens": tokens, "size": n}
    dom_doc = doc.get("domain_laws", {}).get(f"{n:g}")
    if dom_doc is not None:
        domain = FittedLaw.from_json(LAWS[dom_doc["law"]](), dom_doc)
        out["domain"] = _band(domain, {"r": ratio, "T": tokens}, level)
    return out


def cmr_from_cpt_law(fitted: FittedLaw, pt_lr: Any, cpt_lr: Any, tolerance: float, size: float | None = None,
                     level: float = 0.9, base: float | None = None) -> tuple[float, tuple[float, float]]:
    """The CMR a fitted CPT law (scaling.laws.cpt) gives for a CPT phase cpt_lr after pre-training pt_lr: the
    largest share whose general loss at the phase's end minus the loss at the end of pre-training meets the
    tolerance at every share up to it; with its bootstrap interval when the law has replicates. The loss at the end
    of pre-training is the law's own there, or `base`, the measured one: the law is continuous at the CPT start, so
    where the measured loss jumps at the start (benchmarks/cpt_ladder.py) its fit misses it and the law's own
    change misses the jump."""
    pt_lr = np.asarray(pt_lr, float)
    areas = cpt_areas(np.concatenate([pt_lr, np.asarray(cpt_lr, float)]), len(pt_lr), fitted.law.lam)
    end = {k: np.full(len(SHARES), v[-1]) for k, v in areas.items()} | {"r": SHARES}
    start = {k: np.full(len(SHARES), v[len(pt_lr) - 1]) for k, v in areas.items()} | {"r": SHARES}
    if fitted.law.size:
        if size is None:
            raise LadderlabError("cpt: this law has a size term; give the model size N")
        end["N"] = start["N"] = np.full(len(SHARES), float(size))

    def cmr(theta_SxP: np.ndarray) -> np.ndarray:
        before = fitted.law.predict_batch(theta_SxP, start) if base is None else base
        change = fitted.law.predict_batch(theta_SxP, end) - before
        return largest_share(change, tolerance)

    value = float(cmr(fitted.theta[None, :])[0])
    if fitted.boot_BxP is None:
        return value, (value, value)
    ok = np.isfinite(fitted.boot_BxP).all(axis=1)
    lo, hi = percentile_interval(cmr(fitted.boot_BxP[ok]), level)
    return value, (float(lo), float(hi))


def cmr_from_cpt_document(doc: Mapping[str, Any], tolerance: float, cpt_lr: Any, size: float | None = None,
                          level: float = 0.9) -> dict[str, Any]:
    """The CMR the general law of a `fit cpt` document (scaling.laws.cpt.cpt_document) gives for the CPT phase
    cpt_lr at `size` (default: the largest stored), its change measured from the size's measured pre-CPT loss when
    the document has it (else from the law's own; `base` says which), with its interval; `ratio_from_law_base` is
    the CMR from the law's own pre-CPT loss, for comparison."""
    if not np.isfinite(tolerance):
        raise LadderlabError(f"tolerance {tolerance}: must be a finite change of general loss")
    fitted = load_cpt_law(dict(doc))
    pt, n = pt_schedule(dict(doc), size)
    base = pre_cpt_loss(dict(doc), fitted, pt, n)
    ratio, interval = cmr_from_cpt_law(fitted, pt, cpt_lr, tolerance, n, level, base["loss"])
    return {"ratio": ratio, "interval": list(interval), "tolerance": tolerance, "size": n, "steps": len(cpt_lr),
            "form": doc.get("form", "cpt"), "level": level, "base": base,
            "ratio_from_law_base": cmr_from_cpt_law(fitted, pt, cpt_lr, tolerance, n, level)[0]}
