"""The continual-pre-training (CPT) law, after Wang, Tissue et al. (ICML 2025), in the form recalled in
shared/research/laws.md (symbols unverified), with an optional restart step J (ours):

    L = L0 + A (S1pt + S1cpt)^-alpha - C1 S2pt - C2 S2cpt + B r^gamma (1 - (1 + E S1cpt)^-beta)
        [+ J 1(S1cpt > 0)] [+ K (N/1e9)^-nu]

S1/S2 are the LR-annealing law's forward and annealing areas, split at the step where CPT starts (the momentum of
S2 carries over; a re-warm makes S2cpt negative). The B term is the distribution shift, a power law in the CPT
forward area whose size grows with the CPT mixture's domain share r (replay ratio 1 - r): B > 0 for the
pre-training (general) validation loss, B < 0 for the CPT domain's. With r = 0, C1 = C2 and J = 0 it is the
annealing law. The size term K (N/1e9)^-nu (ours) joins when the curves span model sizes.

J is a step of either sign, fitted per validation loss, from the CPT phase's first step on, whatever its share,
peak rate or schedule: a phase that starts a fresh optimizer from the base run's parameters moves its loss at once.
On our CPU CPT ladder (benchmarks/cpt_ladder.py) the general loss is 0.15-0.2 lower at the first evaluation (7-30
steps) of a phase with little or no domain data (r = 0 too), at 0.3x the peak rate as at 1x and with another data
order, but not when the base run resumes with its own optimizer state at the same rate (-0.05 and +0.09); the
continuous law cannot follow that, so its fit splits the drop between its pre-CPT loss and its CPT gains.
`fit_cpt_forms` keeps J when it predicts CPT runs left out of the fit better.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ladderlab.errors import LadderlabError
from ladderlab.scaling.engine.bootstrap import bootstrap as run_bootstrap
from ladderlab.scaling.engine.held_out import held_out_rmse
from ladderlab.scaling.engine.law import Data, FittedLaw, Law, Param, fit_law
from ladderlab.scaling.laws.annealing import LAMBDAS, SIZE_SCALE, dense_schedule, lr_areas, warmup_length
from ladderlab.scaling.laws.schedules import schedule_from_spec
from ladderlab.scaling.tables.curves import Curve

FORMS = {"cpt": False, "cpt+jump": True}  # the law without and with the restart step J


def cpt_areas(lr_T: Any, start: int, lam: float = 0.999) -> dict[str, np.ndarray]:
    """S1pt, S2pt, S1cpt, S2cpt after each step 1..T of a schedule whose CPT phase begins after step `start`
    (0: no CPT); warm-up is the pre-training schedule's own (see annealing.lr_areas)."""
    lr_T = np.asarray(lr_T, float)
    warm = warmup_length(lr_T[:start]) if start else None
    s1, s2 = lr_areas(lr_T, lam, warm)
    at = np.minimum(np.arange(1, len(lr_T) + 1), start) - 1
    s1pt = np.where(at >= 0, s1[np.maximum(at, 0)], 0.0) if start else s1
    s2pt = np.where(at >= 0, s2[np.maximum(at, 0)], 0.0) if start else s2
    return {"S1pt": s1pt, "S2pt": s2pt, "S1cpt": s1 - s1pt, "S2cpt": s2 - s2pt}


class CPTLaw(Law):
    """Inputs S1pt, S2pt, S1cpt, S2cpt, r (and N with size=True); the step J with jump=True; see the module
    docstring."""

    name = "cpt"
    positive = ("S1pt",)

    def __init__(self, lam: float = 0.999, size: bool = False, jump: bool = False):
        self.lam, self.size, self.jump = lam, size, jump
        self.inputs = ("S1pt", "S2pt", "S1cpt", "S2cpt", "r") + (("N",) if size else ())
        self.params = (
            Param("L0", True, -10.0, 5.0, (0.0, 0.5, 1.0)),
            Param("A", True, -15.0, 10.0, (-2.0, 0.0)),
            Param("alpha", False, 0.0, 4.0, (0.3, 0.6)),
            Param("C1", False, 0.0, 1e4, (0.1, 1.0)),
            Param("C2", False, 0.0, 1e4, (0.1, 1.0)),
            Param("B", False, -10.0, 10.0, (-0.3, 0.3)),
            Param("gamma", False, 0.05, 5.0, (1.0,)),
            Param("E", True, -10.0, 10.0, (-1.0, 1.0, 3.0)),
            Param("beta", False, 0.01, 5.0, (0.5, 1.0)),
        ) + ((Param("K", True, -15.0, 5.0, (-2.0, 0.0)), Param("nu", False, 0.0, 3.0, (0.3,))) if size else ()) + (
            (Param("J", False, -5.0, 5.0, (0.0,)),) if jump else ())
        if size:
            self.positive = ("S1pt", "N")

    def spec(self) -> dict[str, Any]:
        return {"lam": self.lam} | ({"size": True} if self.size else {}) | ({"jump": True} if self.jump else {})

    def predict_batch(self, theta_SxP: np.ndarray, x: Data) -> np.ndarray:
        l0, a, alpha, c1, c2, b, gamma, e, beta = (theta_SxP[:, i : i + 1] for i in range(9))
        s1 = (x["S1pt"] + x["S1cpt"])[None, :]
        with np.errstate(divide="ignore"):
            share = np.exp(gamma * np.log(x["r"])[None, :])  # r^gamma, 0 at r = 0
        shift = b * share * (1.0 - np.exp(-beta * np.log1p(np.exp(e) * x["S1cpt"][None, :])))
        out = (np.exp(l0) + np.exp(a - alpha * np.log(s1)) - c1 * x["S2pt"][None, :] - c2 * x["S2cpt"][None, :]
               + shift)
        if self.size:
            out = out + np.exp(theta_SxP[:, 9:10] - theta_SxP[:, 10:11] * np.log(x["N"] / SIZE_SCALE)[None, :])
        if self.jump:
            out = out + theta_SxP[:, -1:] * (x["S1cpt"] > 0)[None, :]
        return out


def curve_inputs(curves: Sequence[Curve], lam: float = 0.999, min_step: int = 1) -> tuple[dict, np.ndarray, np.ndarray]:
    """The CPT law's inputs, the losses and each point's run id over every logged step >= min_step."""
    cols: dict[str, list] = {k: [] for k in ("S1pt", "S2pt", "S1cpt", "S2cpt", "r", "N")}
    y, runs = [], []
    for c in curves:
        lr = dense_schedule(c.lr_steps, c.lr)
        if len(lr) < c.last:
            raise LadderlabError(f"{c.run}: learning rates logged to step {len(lr)}, losses to step {c.last}")
        areas = cpt_areas(lr, c.start, lam)
        keep = c.steps >= max(min_step, 1)
        idx = c.steps[keep].astype(int) - 1
        for k, v in areas.items():
            cols[k].append(v[idx])
        cols["r"].append(np.full(idx.size, c.ratio))
        cols["N"].append(np.full(idx.size, c.n))
        y.append(c.loss[keep])
        runs.append(np.full(idx.size, c.run, object))
    return {k: np.concatenate(v) for k, v in cols.items()}, np.concatenate(y), np.concatenate(runs)


def fit_cpt(curves: Sequence[Curve], lam: float | None = None, size: bool | None = None, min_step: int = 1,
            bootstrap: int = 0, seed: int = 0, jump: bool | None = None) -> FittedLaw:
    """The CPT law fitted on every logged step of PT and CPT curves (see fit_cpt_forms)."""
    return fit_cpt_forms(curves, lam, size, min_step, bootstrap, seed, jump)[0]


def fit_cpt_forms(curves: Sequence[Curve], lam: float | None = None, size: bool | None = None, min_step: int = 1,
                  bootstrap: int = 0, seed: int = 0, jump: bool | None = None) -> tuple[FittedLaw, dict[str, float]]:
    """The CPT law fitted on every logged step of PT and CPT curves, and each form's held-out RMSE over CPT runs.

    Without a CPT curve of domain share > 0 the shift term is pinned to 0; without a CPT curve the step J is left
    out. jump=None fits the law with and without J and keeps the form (FORMS) whose fit predicts CPT runs left out
    of it better (folds of whole CPT runs, the PT runs always fitted); the errors are {} when one form was fitted.
    lam=None profiles the momentum over annealing.LAMBDAS and keeps the best fit. Bootstrap replicates resample
    whole runs."""
    steps = (False,) if not any(c.start > 0 for c in curves) else (False, True) if jump is None else (jump,)
    fits = {form: _fit(curves, lam, size, min_step, step) for form, step in FORMS.items() if step in steps}
    errors = {}
    if len(fits) > 1:
        for form, (fitted, x, y, runs, fixed) in fits.items():
            errors[form] = held_out_rmse(fitted.law, x, y, runs, fixed, seed, always=x["S1cpt"] == 0)
        finite = {f: e for f, e in errors.items() if np.isfinite(e)}
        chosen = min(finite, key=finite.get) if finite else "cpt"
    else:
        chosen = next(iter(fits))
    fitted, x, y, runs, fixed = fits[chosen]
    if bootstrap:
        run_bootstrap(fitted, x, y, n=bootstrap, seed=seed, groups=runs, fixed=fixed, warm=True)
    return fitted, errors


def _fit(curves: Sequence[Curve], lam: float | None, size: bool | None, min_step: int,
         jump: bool) -> tuple[FittedLaw, dict, np.ndarray, np.ndarray, dict | None]:
    best = None
    for value in LAMBDAS if lam is None else (lam,):
        x, y, runs = curve_inputs(curves, value, min_step)
        law = CPTLaw(value, len(np.unique(x["N"])) > 1 if size is None else size, jump)
        x = {k: x[k] for k in law.inputs}
        fixed = None if (x["r"] > 0).any() else {"B": 0.0, "gamma": 1.0, "E": 1.0, "beta": 1.0}
        fitted = fit_law(law, x, y, fixed)
        if best is None or fitted.objective < best[0].objective:
            best = fitted, x, y, runs, fixed
    return best


def predict_cpt(fitted: FittedLaw, pt_lr: Any, cpt_lr: Any, ratio: float, size: float | None = None,
                samples: bool = False) -> np.ndarray:
    """Loss after every CPT step of a run continuing the schedule pt_lr with cpt_lr at domain share `ratio`
    (bootstrap replicates' predictions, B x T, with samples=True)."""
    pt_lr = np.asarray(pt_lr, float)
    areas = cpt_areas(np.concatenate([pt_lr, np.asarray(cpt_lr, float)]), len(pt_lr), fitted.law.lam)
    x = {k: v[len(pt_lr):] for k, v in areas.items()}
    x["r"] = np.full(len(x["S1pt"]), float(ratio))
    if fitted.law.size:
        if size is None:
            raise LadderlabError("cpt: this law has a size term; give the model size N")
        x["N"] = size
    return fitted.predict_samples(**x) if samples else fitted.predict(**x)


def base_loss(fitted: FittedLaw, pt_lr: Any, size: float | None = None) -> float:
    """The law's loss at the end of the pre-training schedule (before CPT)."""
    areas = cpt_areas(pt_lr, 0, fitted.law.lam)
    x = {k: v[-1:] for k, v in areas.items()} | {"r": 0.0}
    if fitted.law.size:
        x["N"] = size
    return float(fitted.predict(**x)[0])


def cpt_document(general: FittedLaw, domain: FittedLaw | None, curves: Sequence[Curve],
                 held_out: dict[str, float] | None = None) -> dict[str, Any]:
    """What `fit cpt --json` writes: the laws (with the general law's form and each form's held-out RMSE), each
    size's pre-training schedule (step, rate pairs) and measured pre-CPT general loss (the last logged loss of its
    pre-training run, when the curves have one), and the CPT runs' tokens per step and peak rate (the defaults for
    a new CPT run)."""
    cpt = [c for c in curves if c.start > 0]
    pt, base = {}, {}
    for c in curves:
        if c.start == 0:
            pt.setdefault(f"{c.n:g}", {"steps": c.lr_steps.tolist(), "lr": c.lr.tolist()})
            base.setdefault(f"{c.n:g}", float(c.loss[np.argmax(c.steps)]))
    for c in cpt:
        keep = c.lr_steps <= c.start
        pt.setdefault(f"{c.n:g}", {"steps": c.lr_steps[keep].tolist(), "lr": c.lr[keep].tolist()})
    per_step = [c.tokens_per_step for c in cpt if np.isfinite(c.tokens_per_step)]
    return {"kind": "cpt", "general": general.to_json(), "domain": None if domain is None else domain.to_json(),
            "form": "cpt+jump" if general.law.jump else "cpt", "held_out_rmse": held_out or {},
            "pt_schedules": pt, "base_losses": base,
            "tokens_per_step": float(np.median(per_step)) if per_step else None,
            "cpt_peak_lr": float(np.median([c.lr[c.lr_steps > c.start].max() for c in cpt])) if cpt else None}


def load_cpt_law(doc: dict[str, Any], which: str = "general") -> FittedLaw | None:
    """The fitted CPT law (`general` or `domain`) of a `fit cpt` document."""
    law_doc = doc[which]
    return None if law_doc is None else FittedLaw.from_json(CPTLaw(**law_doc["spec"]), law_doc)


def pt_schedule(doc: dict[str, Any], size: float | None) -> tuple[np.ndarray, float | None]:
    """The pre-training rate at every step for a size of a `fit cpt` document (default: the largest), and N."""
    sizes = {float(k): v for k, v in doc["pt_schedules"].items()}
    if not sizes:
        raise LadderlabError("cpt law: no pre-training schedule stored")
    n = max(sizes) if size is None else float(size)
    if n not in sizes:
        raise LadderlabError(f"size {n:g}: no pre-training schedule stored (sizes: {', '.join(f'{s:g}' for s in sizes)})")
    return dense_schedule(sizes[n]["steps"], sizes[n]["lr"]), n


def pre_cpt_loss(doc: dict[str, Any], fitted: FittedLaw, pt_lr: Any, size: float) -> dict[str, Any]:
    """The general loss before CPT that changes are measured from: the size's measured one when the document has
    it (source "measured"), else the law's own at the end of pre-training (source "law"); both values."""
    law = base_loss(fitted, pt_lr, size)
    measured = doc.get("base_losses", {}).get(f"{size:g}")
    return {"loss": law if measured is None else float(measured), "source": "law" if measured is None else "measured",
            "law": law}


def cpt_phase(doc: dict[str, Any], tokens: float, spec: str | None = None) -> np.ndarray:
    """The rate at every step of a CPT phase of `tokens` at the fitted runs' tokens per step: `spec` is a
    schedules.schedule_from_spec spec without steps= (default: constant at the fitted runs' CPT peak)."""
    per_step = doc.get("tokens_per_step")
    if not per_step:
        raise LadderlabError("cpt law: no CPT runs' tokens per step stored; cannot turn tokens into steps")
    steps = max(1, int(round(tokens / per_step)))
    spec = spec or f"constant:peak={doc['cpt_peak_lr']}"
    return schedule_from_spec(f"{spec},steps={steps}" if ":" in spec else f"{spec}:steps={steps}")


def cpt_loss(doc: dict[str, Any], ratio: float, cpt_lr: np.ndarray, size: float | None = None,
             level: float = 0.9) -> dict[str, Any]:
    """General and domain loss (with bootstrap intervals when the fit had them) at the end of a CPT phase, the
    pre-CPT general loss (`pre_cpt_loss`) and the general loss's change from it."""
    pt, n = pt_schedule(doc, size)
    out: dict[str, Any] = {"form": "cpt-law", "level": level, "ratio": ratio, "steps": len(cpt_lr), "size": n}
    for which in ("general", "domain"):
        fitted = load_cpt_law(doc, which)
        if fitted is None:
            out[which] = None
            continue
        loss = float(predict_cpt(fitted, pt, cpt_lr, ratio, n)[-1])
        lo = hi = loss
        if fitted.boot_BxP is not None:
            samples = predict_cpt(fitted, pt, cpt_lr, ratio, n, samples=True)[:, -1]
            lo, hi = (float(v) for v in np.nanpercentile(samples, [50 * (1 - level), 50 * (1 + level)]))
        out[which] = {"loss": loss, "lo": lo, "hi": hi}
        if which == "general":
            out["base"] = pre_cpt_loss(doc, fitted, pt, n)
            out["general"]["change"] = loss - out["base"]["loss"]
    return out
