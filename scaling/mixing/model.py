"""A fitted mixing model: one mixing law per validation column, chosen by k-fold cross-validation.

`fit_mixing_model` fits every loss column with the requested law ("plain", "log", "implicit") or, with "auto",
with whichever of plain and log predicts held-out runs better (log needs more runs than its 2M+1 parameters).
A law's cross-validation folds and final fits of every column are one batch of fits. Out-of-fold predictions
are kept: they give held-out Spearman and the prediction intervals (robust spread of held-out log errors), which
are honest for new mixtures, unlike in-sample residuals.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from statistics import NormalDist
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from scipy.stats import spearmanr

from ladderlab.errors import LadderlabError
from ladderlab.paths import write_atomic
from ladderlab.scaling.engine.law import FittedLaw, Law, fitted_at
from ladderlab.scaling.mixing.law import ImplicitMixingLaw, MixingLaw, fit_mixing_batch
from ladderlab.scaling.tables.columns import read_json

MODELS = ("auto", "plain", "log", "implicit")
FOLDS = 5


def make_mixing_law(model: str, domains: Sequence[str], latent: int = 3) -> Law:
    """The law a model name stands for ("plain": the paper's form; "log": with log-share features)."""
    if model == "plain":
        return MixingLaw(domains, "linear")
    if model == "log":
        return MixingLaw(domains, "log")
    if model == "implicit":
        return ImplicitMixingLaw(domains, latent)
    raise LadderlabError(f"unknown mixing model {model!r} (known: {', '.join(MODELS)})")


def model_name(law: Law) -> str:
    if isinstance(law, ImplicitMixingLaw):
        return "implicit"
    return "plain" if law.features == "linear" else "log"


def target_weights(target: str | Mapping[str, float] | None, columns: Sequence[str]) -> dict[str, float]:
    """Target as column weights: one column, given weights (explicit aggregation), or all columns equally."""
    if target is None:
        return {c: 1.0 / len(columns) for c in columns}
    weights = {target: 1.0} if isinstance(target, str) else dict(target)
    unknown = sorted(set(weights) - set(columns))
    if unknown:
        raise LadderlabError(f"unknown target column(s) {', '.join(unknown)} (fitted: {', '.join(columns)})")
    return weights


@dataclass
class MixingModel:
    """Per validation column: the fitted law, out-of-fold predictions and observations, CV scores per model."""

    domains: tuple[str, ...]
    laws: dict[str, FittedLaw]
    oof: dict[str, np.ndarray]
    observed: dict[str, np.ndarray]
    cv: dict[str, dict[str, dict[str, float]]]
    id_col: str = "id"
    warnings: list[str] = field(default_factory=list)
    share_max: dict[str, float] = field(default_factory=dict)  # largest share of each domain among the fitted runs
    proportions: dict[str, np.ndarray] = field(default_factory=dict)  # the fitted runs' shares (plots mark them)

    @property
    def targets(self) -> list[str]:
        return list(self.laws)

    def predict(self, r: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Predicted loss of every validation column at the mixtures r (domain -> shares)."""
        unknown = sorted(set(r) - set(self.domains))
        if unknown:
            raise LadderlabError(f"unknown domain(s) {', '.join(unknown)} (the law knows: {', '.join(self.domains)})")
        x = {d: np.atleast_1d(np.asarray(r.get(d, 0.0), float)) for d in self.domains}
        x = dict(zip(self.domains, np.broadcast_arrays(*x.values())))
        return {c: law.law.predict_batch(law.theta[None, :], x)[0] for c, law in self.laws.items()}

    def weights(self, target: str | Mapping[str, float] | None) -> dict[str, float]:
        """Target as column weights (`target_weights` over this model's columns)."""
        return target_weights(target, list(self.laws))

    def predict_target(self, r_NxM: np.ndarray, weights: Mapping[str, float]) -> np.ndarray:
        """Weighted predicted loss at N mixtures given as an N x M array in domain order."""
        x = {d: r_NxM[:, j] for j, d in enumerate(self.domains)}
        return sum(w * self.laws[c].law.predict_batch(self.laws[c].theta[None, :], x)[0] for c, w in weights.items())

    def interval(self, prediction: np.ndarray, weights: Mapping[str, float], level: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
        """Interval from held-out errors e = log(observed / out-of-fold prediction): prediction x exp(median(e) +-
        z x 1.4826 MAD(e)), a normal interval robust to the wild out-of-fold extrapolation a few runs can get (with a
        handful of runs, quantiles would be the extremes, and one exploded prediction sends a bound to 0)."""
        obs = sum(w * self.observed[c] for c, w in weights.items())
        oof = sum(w * self.oof[c] for c, w in weights.items())
        err = np.log(obs) - np.log(oof)
        err = err[np.isfinite(err)]
        center = np.median(err)
        half = NormalDist().inv_cdf(1 - (1 - level) / 2) * 1.4826 * np.median(np.abs(err - center))
        return prediction * np.exp(center - half), prediction * np.exp(center + half)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "mixing-law",
            "id_col": self.id_col,
            "domains": list(self.domains),
            "share_max": self.share_max,
            "proportions": {d: v.tolist() for d, v in self.proportions.items()},
            "warnings": self.warnings,
            "targets": {
                c: {"model": model_name(f.law), "fit": f.to_json(), "cv": self.cv[c],
                    "oof": self.oof[c].tolist(), "observed": self.observed[c].tolist()}
                for c, f in self.laws.items()
            },
        }

    def save(self, path: str | Path) -> None:
        """Write the model's JSON (`load_mixing_model` reads it back), atomically, locally or to a URL."""
        write_atomic(path, json.dumps(self.to_json(), indent=2))


def load_mixing_model(path: str | Path) -> MixingModel:
    """Rebuild a MixingModel from the JSON that `save` wrote."""
    return read_json(path, "mixing-law", lambda doc: _model_from_json(path, doc))


def _model_from_json(path: str | Path, doc: dict[str, Any]) -> MixingModel:
    if doc.get("kind") != "mixing-law":
        raise LadderlabError(f"{path}: not a mixing-law JSON (write one with `ladderlab fit mixing-law --json`)")
    domains = tuple(doc["domains"])
    laws, oof, observed, cv = {}, {}, {}, {}
    for c, t in doc["targets"].items():
        law = make_mixing_law(t["model"], domains, t["fit"]["spec"].get("latent", 3))
        laws[c] = FittedLaw.from_json(law, t["fit"])
        oof[c], observed[c], cv[c] = np.array(t["oof"]), np.array(t["observed"]), t["cv"]
    proportions = {d: np.array(v, float) for d, v in doc.get("proportions", {}).items()}  # older JSON lacks them
    return MixingModel(domains, laws, oof, observed, cv, doc["id_col"], list(doc.get("warnings", [])),
                       doc["share_max"], proportions)


def folds_of(n: int, k: int, seed: int) -> np.ndarray:
    """Fold number of each row: a seeded permutation dealt round-robin into k folds."""
    return np.random.default_rng(seed).permutation(n) % k


def cross_fit(law: Law, x: dict[str, np.ndarray], y_CxN: np.ndarray, fold: np.ndarray | None,
              weights: np.ndarray | None = None) -> tuple[np.ndarray | None, list[FittedLaw]]:
    """Every column's out-of-fold predictions (each row predicted by the law fitted without its fold; None without
    folds) and its fit on every row, all in one batch of fits (columns x (folds + 1)); `weights`: each row's weight
    in every fit's objective (default 1)."""
    folds = [] if fold is None else list(np.unique(fold))
    n_cols, n = y_CxN.shape
    w_SxN = np.array([*(fold != f for f in folds), np.ones(n, bool)], float)  # one row per split, the last all
    if weights is not None:
        w_SxN = w_SxN * weights
    theta, value, done = fit_mixing_batch(law, x, np.repeat(y_CxN, len(w_SxN), axis=0), np.tile(w_SxN, (n_cols, 1)))
    theta, value, done = (a.reshape(n_cols, len(w_SxN), *a.shape[1:]) for a in (theta, value, done))
    oof = None
    if folds:
        oof = np.empty_like(y_CxN)
        for s, f in enumerate(folds):
            held = fold == f
            oof[:, held] = law.predict_batch(theta[:, s], {d: v[held] for d, v in x.items()})
    full = [fitted_at(law, theta[c, -1], value[c, -1], x, y_CxN[c], bool(done[c, -1])) for c in range(n_cols)]
    return oof, full


def cv_scores(pred: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Held-out RMSE of log loss and Spearman rank correlation of predicted against observed."""
    with np.errstate(all="ignore"):
        rmse = float(np.sqrt(np.mean((np.log(pred) - np.log(y)) ** 2)))
        rho = float(spearmanr(pred, y)[0]) if len(y) > 2 else float("nan")
    return {"rmse_log": rmse if np.isfinite(rmse) else float("inf"), "spearman": rho}


def fit_mixing_model(
    proportions: Mapping[str, np.ndarray],
    losses: Mapping[str, np.ndarray],
    model: str = "auto",
    latent: int = 3,
    folds: int = FOLDS,
    seed: int = 0,
    id_col: str = "id",
    weights: np.ndarray | None = None,
) -> MixingModel:
    """Fit one mixing law per loss column; "auto" picks plain or log per column by held-out RMSE of log loss.
    `weights`: each run's weight in the fits' objective (default 1; e.g. < 1 for cheap proxy losses, such as merged
    models' from `ladderlab ablate`); the held-out scores and intervals count every run alike."""
    if model not in MODELS:
        raise LadderlabError(f"unknown mixing model {model!r} (known: {', '.join(MODELS)})")
    if model == "implicit" and len(losses) != 1:
        raise LadderlabError(f"the implicit law fits one total-loss column; got {len(losses)} (pick one with --target)")
    domains = tuple(proportions)
    x = {d: np.asarray(v, float) for d, v in proportions.items()}
    n = len(next(iter(x.values())))
    if weights is not None:
        weights = np.asarray(weights, float)
        if weights.shape != (n,) or not (np.isfinite(weights) & (weights > 0)).all():
            raise LadderlabError(f"weights: need {n} positive finite run weights, got {weights.tolist()}")
    fold = folds_of(n, min(folds, n), seed)
    n_train = n - np.bincount(fold).max()
    candidates = ["plain", "log"] if model == "auto" else [model]
    out = MixingModel(domains, {}, {}, {}, {}, id_col, share_max={d: float(v.max()) for d, v in x.items()},
                      proportions=x)
    cols = list(losses)
    for col in cols:
        y = np.asarray(losses[col], float)
        if len(y) != n:
            raise LadderlabError(f"loss column {col} has {len(y)} rows, the mixtures have {n}")
        bad = np.flatnonzero(~np.isfinite(y) | (y <= 0))
        if bad.size:
            raise LadderlabError(f"loss column {col}: value {y[bad[0]]} at row {bad[0]} is not a positive number")
    y_CxN = np.array([np.asarray(losses[c], float) for c in cols])
    laws = {m: make_mixing_law(m, domains, latent) for m in candidates}
    too_big = [m for m, law in laws.items() if len(law.params) >= n]
    if too_big and model != "auto":
        raise LadderlabError(f"{cols[0]}: fewer runs ({n}) than parameters of the {model} law ({len(laws[model].params)}); "
                             "add runs or use fewer domains")
    usable = [m for m, law in laws.items() if len(law.params) < n_train]
    fits = {m: cross_fit(laws[m], x, y_CxN, fold if m in usable else None, weights) for m in usable or candidates[:1]}
    for c, (col, y) in enumerate(zip(cols, y_CxN)):
        scores = {m: cv_scores(fits[m][0][c], y) for m in usable}
        chosen = min(scores, key=lambda m: scores[m]["rmse_log"]) if scores else candidates[0]
        fitted = fits[chosen][1][c]
        if not scores:  # too few runs to cross-validate: in-sample errors are all we have
            oof = fitted.predict(**x)
            out.warnings.append(f"{col}: too few runs ({n}) to cross-validate; intervals use in-sample errors")
        else:
            oof = fits[chosen][0][c]
        out.laws[col], out.oof[col], out.observed[col], out.cv[col] = fitted, oof, y, scores
    return out
