"""Fit small, predict large, score: every cut of every set, bootstrap intervals on the reported splits, and the
before/after table (today's bootstrap intervals against calibrated ones, calibrated without the set scored).
Curve sets (the annealing law) borrow the ladder sets' calibration (flagged: the law has no other backtested family to
calibrate it on); fold sets (the mixing law) keep their own intervals, each fold's from the other folds' held-out
errors (no extrapolation distance); mixture sets (joint law and nested pipeline) keep their own intervals."""

from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

import numpy as np
from threadpoolctl import threadpool_limits

from ladderlab.errors import LadderlabError
from ladderlab.scaling.backtest.calibration import Calibration, Residuals, calibrate, distance
from ladderlab.scaling.backtest.mixtures import mixture_backtest
from ladderlab.scaling.backtest.sets import AnySet, BacktestSet, CurveSet, FoldSet, MixtureSet
from ladderlab.scaling.engine.bootstrap import bootstrap
from ladderlab.scaling.engine.law import FittedLaw, fit_law
from ladderlab.scaling.engine.parallel import map_jobs
from ladderlab.scaling.laws.annealing import curve_data, final_predictions, fit_curves
from ladderlab.scaling.laws.chinchilla import Chinchilla
from ladderlab.scaling.laws.data_constrained import DataConstrained
from ladderlab.scaling.laws.kaplan import Kaplan
from ladderlab.scaling.mixing.model import FOLDS, MixingModel, cv_scores, fit_mixing_model, folds_of


def method_inputs(method: str, x: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The law's inputs from a table's columns (chinchilla-nonembed: N is the non-embedding count)."""
    if method == "chinchilla-nonembed":
        return {"N": x["N_nonembed"], "D": x["D"]}
    if method == "data-constrained":
        return {"N": x["N"], "D": x["D"], "U": x["U"]}
    return {"N": x["N"], "D": x["D"]}


def fit_method(method: str, x: Mapping[str, np.ndarray], y: np.ndarray) -> tuple[FittedLaw, dict[str, float] | None]:
    """Fit a method as `ladderlab fit` does; the data-constrained law holds a Chinchilla base fitted on the
    single-epoch rows fixed (returned, so a bootstrap keeps it fixed too)."""
    if method != "data-constrained":
        return fit_law(Kaplan() if method == "kaplan" else Chinchilla(), x, y), None
    single = x["D"] <= x["U"]
    base = fit_law(Chinchilla(), {"N": x["N"][single], "D": x["D"][single]}, y[single])
    fitted = fit_law(DataConstrained(), x, y, fixed=base.params)
    fitted.warnings.extend(f"base fit: {w}" for w in base.warnings)
    return fitted, base.params


def cuts(sizes: np.ndarray, min_sizes: int) -> list[float]:
    """The largest fitted size of every backtested cut: each size with at least min_sizes - 1 at or below it (the
    first cut only gives the next its scale) and a larger one above."""
    return [float(s) for k, s in enumerate(sizes[:-1]) if k + 2 >= min_sizes and k >= 1]


def spread(log_err: np.ndarray) -> float:
    """Robust RMS of log errors: 1.4826 x their median absolute value (the RMS of normal errors), so a few misfit
    runs (datablations' check at 619M: 3 of 11 log errors 0.12-0.25, the rest below 0.09) do not set a fit's scale."""
    return float(1.4826 * np.median(np.abs(log_err)))


def scale(log_err_largest: np.ndarray, log_residuals: np.ndarray) -> float:
    """A fit's scale: the spread of the log errors on its largest size of the same law fitted without that size (how
    its form extrapolates) and of the fit's in-sample log residuals (how noisy the runs are), in quadrature."""
    return float(np.hypot(spread(log_err_largest), spread(log_residuals)))


def self_check_scale(method: str, x: Mapping[str, np.ndarray], y: np.ndarray, fitted: FittedLaw) -> float | None:
    """The scale of `fitted` (fitted to x, y by `method`): refit without the largest N and predict it; None with
    fewer than 3 sizes or when the refit fails."""
    size = x["N"]
    sizes = np.unique(size)
    if len(sizes) < 3:
        return None
    below = size < sizes[-1]
    try:
        inner, _ = fit_method(method, {k: v[below] for k, v in x.items()}, y[below])
    except LadderlabError:
        return None
    top = {k: v[~below] for k, v in x.items()}
    return scale(np.log(y[~below] / inner.predict(**top)), np.log(y / fitted.predict(**x)))


def _backtest_table(job: tuple) -> list[dict[str, Any]]:
    family, table, method, splits, min_sizes, n_boot, seed, warm = job
    x_all = method_inputs(method, table.x)
    size = table.x["N"]
    rows: list[dict[str, Any]] = []
    previous: tuple[np.ndarray, np.ndarray] | None = None  # the last cut's target sizes and log errors
    with threadpool_limits(1):  # many tiny L-BFGS-B steps: BLAS threads only slow them down
        for cut in cuts(np.unique(size), min_sizes):
            fit_rows = size <= cut
            x = {k: v[fit_rows] for k, v in x_all.items()}
            try:
                fitted, fixed = fit_method(method, x, table.y[fit_rows])
            except LadderlabError:
                previous = None
                continue  # too few rows below this cut for the law
            targets = ~fit_rows
            at = {k: v[targets] for k, v in x_all.items()}
            pred = fitted.predict(**at)
            actual = table.y[targets]
            log_err = np.log(actual / pred)
            in_sample = np.log(table.y[fit_rows] / fitted.predict(**x))
            sigma = None if previous is None else scale(previous[1][previous[0] == cut], in_sample)
            previous = (size[targets], log_err)
            if sigma is None:
                continue  # no smaller cut to take this fit's scale from
            reported = [s for s in splits if np.isclose(cut, max(size[size <= s.fit_max_n], default=-1))]
            if reported and n_boot:
                bootstrap(fitted, x, table.y[fit_rows], n=n_boot, seed=seed, fixed=fixed, warm=warm)
            lo, hi = fitted.interval(0.9, **at) if fitted.boot_BxP is not None else (np.full_like(pred, np.nan),) * 2
            dist = distance({k: float(v.max()) for k, v in x.items()}, at)
            bound = any("at its bound" in w for w in fitted.warnings)
            for i, n in enumerate(size[targets]):
                split = next((s.name for s in reported if s.target_n is None or np.isclose(n, s.target_n)), "")
                rows.append({"family": family, "table": table.label, "method": method, "cut": cut, "split": split,
                             "N": float(at["N"][i]), "D": float(at["D"][i]), "dist": float(dist[i]),
                             "pred": float(pred[i]), "actual": float(actual[i]), "scale": sigma,
                             "boot_lo": float(lo[i]), "boot_hi": float(hi[i]), "bound": bound})
    return rows


def run_splits(sets: Mapping[str, BacktestSet], n_boot: int = 200, seed: int = 0, warm: bool = True,
               workers: int | None = None) -> list[dict[str, Any]]:
    """Every (set, table, method) backtested at every cut, one prediction row per target run."""
    jobs = [(s.family, t, m, s.splits, s.min_sizes, n_boot, seed, warm)
            for s in sets.values() for t in s.tables for m in s.methods]
    workers = max(1, min(workers or os.cpu_count() or 1, len(jobs)))
    return [row for rows in map_jobs(_backtest_table, jobs, workers) for row in rows]


def residuals(rows: Sequence[dict[str, Any]]) -> Residuals:
    """The calibration residuals of backtest rows (every cut, every target)."""
    pred = np.array([r["pred"] for r in rows])
    boot = [np.nan_to_num(np.log(np.array([r[k] for r in rows]) / pred)) for k in ("boot_lo", "boot_hi")]
    return Residuals(*(np.array([r[k] for r in rows], object) for k in ("family", "method", "split")),
                     np.array([r["dist"] for r in rows]), np.log(np.array([r["actual"] for r in rows]) / pred),
                     np.array([r["scale"] for r in rows]), *boot)


def score(rows: Sequence[dict[str, Any]], calibration_for: Mapping[str, Calibration]) -> dict[str, dict[str, Any]]:
    """{split: {method: {mape, coverage_90, width_90_pct, n_targets}}}: `method` with today's bootstrap interval,
    `method/calibrated` with the calibration that left the split's family out."""
    out: dict[str, dict[str, Any]] = {}
    for split in dict.fromkeys(r["split"] for r in rows if r["split"]):
        for method in dict.fromkeys(r["method"] for r in rows if r["split"] == split):
            sel = [r for r in rows if r["split"] == split and r["method"] == method]
            y, pred = np.array([r["actual"] for r in sel]), np.array([r["pred"] for r in sel])
            lo, hi = np.array([r["boot_lo"] for r in sel]), np.array([r["boot_hi"] for r in sel])
            c_lo, c_hi = _calibrated(calibration_for[sel[0]["family"]], sel, pred, lo, hi)
            mape = float(np.mean(np.abs(pred / y - 1)) * 100)
            out.setdefault(split, {})[method] = _metrics(mape, y, lo, hi)
            out[split][f"{method}/calibrated"] = {**_metrics(mape, y, c_lo, c_hi), "calibration": BORROWED}
    return out


def _calibrated(cal: Calibration, sel: Sequence[dict[str, Any]], pred: np.ndarray, lo: np.ndarray,
                hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The calibrated intervals of rows `sel`, widened to their bootstrap intervals (lo, hi) where those exist."""
    boot = (lo, hi) if np.isfinite(lo).all() and np.isfinite(hi).all() else (None, None)
    return cal.interval(pred, np.array([r["dist"] for r in sel]), np.array([r["scale"] for r in sel]), *boot)


def _metrics(mape: float, y: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> dict[str, Any]:
    has = bool(np.isfinite(lo).all())
    return {"mape": mape, "coverage_90": float(np.mean((y >= lo) & (y <= hi))) if has else None,
            "width_90_pct": float(np.mean((hi - lo) / y) * 100) if has else None, "n_targets": int(len(y))}


def _curve_table(job: tuple) -> list[dict[str, Any]]:
    """One loss column of a curve set: the annealing law fitted on the small runs' every logged step (bootstrap over
    whole runs), each target branch's final loss predicted with its 90% interval; the fit's scale (as the ladder
    sets': the law refitted without the largest fitted size predicts that size's branches) for the calibration."""
    family, split, label, curves, fit_max_n, targets, n_boot, seed = job
    fit_curves_ = [c for c in curves if c.n <= fit_max_n]
    largest = max(c.n for c in fit_curves_)
    with threadpool_limits(1):
        fitted = fit_curves(fit_curves_, bootstrap=n_boot, seed=seed)
        inner = fit_curves([c for c in fit_curves_ if c.n < largest])
    check = final_predictions(inner, [c for c in fit_curves_ if c.n == largest and c.start > 0])
    x, y, _ = curve_data(fit_curves_, fitted.law.lam)
    sigma = scale(np.log(check["actual"] / check["pred"]), np.log(y / fitted.predict(**x)))
    shown = [c for c in curves if c.run in targets]
    got = final_predictions(fitted, shown)
    nan = np.full(len(shown), np.nan)
    lo, hi = (nan, nan) if got["lo"] is None else (got["lo"], got["hi"])
    return [{"family": family, "split": split, "method": "annealing", "table": label, "run": c.run,
             "pred": float(got["pred"][i]), "actual": float(got["actual"][i]), "lo": float(lo[i]), "hi": float(hi[i]),
             "dist": float(np.log(c.n / largest)), "scale": sigma} for i, c in enumerate(shown)]


def _fold_table(job: tuple) -> list[dict[str, Any]]:
    """One loss column of a fold set: every run predicted by the mixing law ("auto": plain or log by held-out
    error) fitted without its fold; its 90% interval from the held-out errors of the other folds' runs."""
    family, split, label, proportions, y, seed = job
    with threadpool_limits(1):
        model = fit_mixing_model(proportions, {label: y}, seed=seed)
    fold = folds_of(len(y), min(FOLDS, len(y)), seed)  # the folds fit_mixing_model held out
    oof = model.oof[label]
    lo, hi = np.empty_like(oof), np.empty_like(oof)
    for f in np.unique(fold):
        held = fold == f
        others = MixingModel(model.domains, model.laws, {label: oof[~held]}, {label: y[~held]}, model.cv)
        lo[held], hi[held] = others.interval(oof[held], {label: 1.0})
    rho = cv_scores(oof, y)["spearman"]
    return [{"family": family, "split": split, "method": "mixing-law", "table": label, "run": i, "pred": float(oof[i]),
             "actual": float(y[i]), "lo": float(lo[i]), "hi": float(hi[i]), "spearman": rho} for i in range(len(y))]


def run_whole(sets: Mapping[str, CurveSet | FoldSet], n_boot: int = 200, seed: int = 0,
              workers: int | None = None) -> list[dict[str, Any]]:
    """Every loss column of the curve and fold sets scored, one prediction row per target run."""
    jobs = [(_curve_table, (s.family, s.split, label, curves, s.fit_max_n, s.targets, n_boot, seed))
            for s in sets.values() if isinstance(s, CurveSet) for label, curves in s.curves.items()]
    jobs += [(_fold_table, (s.family, s.split, label, s.proportions, y, seed))
             for s in sets.values() if isinstance(s, FoldSet) for label, y in s.losses.items()]
    workers = max(1, min(workers or os.cpu_count() or 1, len(jobs) or 1))
    return [row for rows in map_jobs(_call, jobs, workers) for row in rows]


def _call(job: tuple) -> Any:
    fn, args = job
    return fn(args)


FOLD_INTERVAL = "each fold's interval from the other folds' held-out errors: held-out already, no distance to calibrate"
BORROWED = ("borrowed from the other families' Chinchilla and data-constrained backtests: this law is backtested on "
            "one family only, so it has no leave-one-set-out calibration of its own")


def score_whole(rows: Sequence[dict[str, Any]],
                calibration_for: Mapping[str, Calibration]) -> dict[str, dict[str, Any]]:
    """{split: {method: {mape, coverage_90, width_90_pct, n_targets[, spearman, calibration]}}} of curve and fold set
    rows (spearman: held-out rank correlation averaged over the loss columns); curve rows also as
    `method/calibrated`, with the calibration that left their family out."""
    out: dict[str, dict[str, Any]] = {}
    for split, method in dict.fromkeys((r["split"], r["method"]) for r in rows):
        sel = [r for r in rows if r["split"] == split and r["method"] == method]
        y, pred = np.array([r["actual"] for r in sel]), np.array([r["pred"] for r in sel])
        lo, hi = np.array([r["lo"] for r in sel]), np.array([r["hi"] for r in sel])
        mape = float(np.mean(np.abs(pred / y - 1)) * 100)
        metrics = _metrics(mape, y, lo, hi)
        if "spearman" in sel[0]:
            metrics["spearman"] = float(np.mean(list({r["table"]: r["spearman"] for r in sel}.values())))
            metrics["calibration"] = FOLD_INTERVAL
        out.setdefault(split, {})[method] = metrics
        if "scale" in sel[0]:
            c_lo, c_hi = _calibrated(calibration_for[sel[0]["family"]], sel, pred, lo, hi)
            out[split][f"{method}/calibrated"] = {**_metrics(mape, y, c_lo, c_hi), "calibration": BORROWED}
    return out


MIXTURE_DRAWS = 20  # each joint replicate refits a 9-parameter law on every loss column: keeps a bare run short


def backtest(sets: Mapping[str, AnySet], shipped: Residuals, n_boot: int = 200, seed: int = 0,
             warm: bool = True, workers: int | None = None) -> tuple[dict[str, Any], Residuals, list[dict[str, Any]]]:
    """Backtest `sets`; score each ladder and curve set against a calibration built from every other family (this
    run's ladder residuals replacing the shipped ones of the families it ran; curve sets borrow it, adding none:
    their law is backtested on one family only), fold sets with their own intervals, mixture sets with at most
    MIXTURE_DRAWS bootstrap replicates or error draws (scaling.backtest.mixtures: no calibration).
    Returns the scores, the residual pool and the ladder sets' rows."""
    ladders = {k: s for k, s in sets.items() if isinstance(s, BacktestSet)}
    whole = {k: s for k, s in sets.items() if isinstance(s, (CurveSet, FoldSet))}
    rows = run_splits(ladders, n_boot, seed, warm, workers)
    whole_rows = run_whole(whole, n_boot, seed, workers) if whole else []
    fresh = [r for r in rows if not r["family"].startswith("csv:")]  # only the laws the calibration serves
    pool = shipped.replacing(residuals(fresh)) if fresh else shipped
    calibration_for = {f: calibrate(pool.without([f])) for f in sorted({r["family"] for r in rows + whole_rows})}
    doc = score(rows, calibration_for)
    doc.update(score_whole(whole_rows, calibration_for))
    doc.update({s.split: mixture_backtest(s, min(n_boot, MIXTURE_DRAWS), seed)
                for s in sets.values() if isinstance(s, MixtureSet)})
    return doc, pool, rows
