"""Reports of fitted laws: parameters with intervals, fit error, warnings, compute-optimal rows, predictions, and
each prediction's calibrated interval and verdict (from the backtests, scaling/backtest/)."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from rich.console import Console
from rich.table import Table

from ladderlab.console import fmt, make_console
from ladderlab.scaling.backtest.calibration import Calibration, bundled_calibration, distance
from ladderlab.scaling.backtest.verdict import judge
from ladderlab.scaling.engine.law import FittedLaw, percentile_interval
from ladderlab.scaling.laws import chinchilla, kaplan

LEVEL = 0.9
PLAUSIBLE_TOKENS_PER_PARAM = (5.0, 200.0)  # published compute-optimal fits give about 10-100 (Chinchilla: 20)
RULE_TOKENS_PER_PARAM = 20.0  # the allocation a compute-optimal one must beat to be worth naming
OPTIMA = {"chinchilla": chinchilla.compute_optimal, "kaplan": kaplan.compute_optimal}  # law -> N_opt(C), D_opt(C)


def params_table(fitted: FittedLaw, title: str) -> Table:
    """Each parameter with its bootstrap interval (when replicates exist)."""
    intervals = fitted.param_intervals(LEVEL)
    table = Table(title=title, title_justify="left")
    table.add_column("parameter")
    table.add_column("value", justify="right")
    table.add_column(f"{int(LEVEL * 100)}% interval", justify="right")
    for name, value in fitted.params.items():
        lo, hi = intervals.get(name, (None, None))
        interval = "fixed" if name in fitted.fixed else "-" if lo is None else f"[{fmt(lo)}, {fmt(hi)}]"
        table.add_row(name, fmt(value), interval)
    return table


def quality_line(fitted: FittedLaw) -> str:
    """Fit error: RMSE of log loss and mean absolute % error, over the fitted points."""
    boot = "" if fitted.boot_BxP is None else f", {len(fitted.boot_BxP)} bootstrap refits (seed {fitted.seed})"
    return (
        f"fit on {fitted.n_points} points: RMSE(log loss) {fitted.rmse_log:.4g}, "
        f"mean abs error {fitted.mape:.3g}%, objective {fitted.objective:.6g}{boot}"
    )


def fit_info(x: dict[str, np.ndarray], scale: float | None) -> dict[str, Any]:
    """What a prediction's verdict needs from the fit: the largest fitted value of each input and the fit's
    scale (its leave-largest-size-out error; None when it has none). Saved with the law as "backtest"."""
    return {"fit_max": {k: float(np.max(v)) for k, v in x.items()}, "scale": scale}


def judged(fitted: FittedLaw, info: dict[str, Any], point: dict[str, Any], pred: float,
           calibration: Calibration | None = None, boot: tuple[float, float] | None = None) -> dict[str, Any]:
    """Distance ratio past the fitted runs, calibrated 90% interval (widened to the bootstrap one `boot` where that
    is wider) and verdict of one prediction."""
    cal = calibration or bundled_calibration()
    dist = float(distance(info["fit_max"], point)[0])
    out: dict[str, Any] = {"past_fitted": float(np.exp(dist))}
    if info.get("scale") is not None:
        lo, hi = cal.interval(np.array([pred]), np.array([dist]), info["scale"], *(boot or (None, None)))
        out["calibrated_lo"], out["calibrated_hi"] = float(lo[0]), float(hi[0])
    out["verdict"] = judge(dist, info.get("scale"), fitted.warnings, cal).text()
    return out


def compute_optimal_rows(fitted: FittedLaw, budgets: Sequence[float], info: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Compute-optimal N, D, tokens per parameter and loss at each FLOP budget, with bootstrap intervals; the loss
    gained over the 20-tokens-per-parameter allocation and whether the bootstrap says it is significant (its 5th
    percentile above 0); each row's verdict when `info` (fit_info) is given."""
    compute_optimal = OPTIMA[fitted.law.name]
    c = np.asarray(budgets, float)
    n, d = compute_optimal(fitted.params, c)
    n_rule = np.sqrt(c / (6.0 * RULE_TOKENS_PER_PARAM))
    loss, loss_rule = fitted.predict(N=n, D=d), fitted.predict(N=n_rule, D=RULE_TOKENS_PER_PARAM * n_rule)
    rows = [
        {"flops": float(ci), "N": float(ni), "D": float(di), "tokens_per_param": float(di / ni), "loss": float(li),
         "gain_vs_20tpp_pct": float((lr - li) / lr * 100)}
        for ci, ni, di, li, lr in zip(c, n, d, loss, loss_rule)
    ]
    if fitted.boot_BxP is not None:
        samples = [compute_optimal(fitted.law.to_public(t), c) for t in fitted.boot_BxP]
        n_b = np.array([s[0] for s in samples])
        d_b = np.array([s[1] for s in samples])
        for key, arr in (("N", n_b), ("D", d_b), ("tokens_per_param", d_b / n_b)):
            lo, hi = percentile_interval(arr, LEVEL)
            for row, a, b in zip(rows, lo, hi):
                row[f"{key}_lo"], row[f"{key}_hi"] = float(a), float(b)
        gain_b = (fitted.predict_samples(N=n_rule, D=RULE_TOKENS_PER_PARAM * n_rule)
                  - fitted.predict_samples(N=n, D=d))
        low = np.nanpercentile(gain_b, 100 * (1 - LEVEL) / 2, axis=0)
        for row, g in zip(rows, low):
            row["significant"] = bool(g > 0)
    for row in rows:
        if info is not None:
            row["verdict"] = judged(fitted, info, {"N": row["N"], "D": row["D"]}, row["loss"])["verdict"]
    return rows


def compute_optimal_warnings(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Implausible tokens per parameter, and optima whose gain over 20 tokens/parameter is inside the noise."""
    out = []
    lo, hi = PLAUSIBLE_TOKENS_PER_PARAM
    odd = [r for r in rows if not lo <= r["tokens_per_param"] <= hi]
    if odd:
        tpp = ", ".join(f"{r['tokens_per_param']:.3g} at {r['flops']:.3g}" for r in odd)
        out.append(f"implausible compute-optimal tokens per parameter ({tpp} FLOPs; published fits give about "
                   f"10-100): the fitted exponents should not be used to allocate compute")
    weak = [r for r in rows if r.get("significant") is False]
    if weak:
        budgets = ", ".join(f"{r['flops']:.3g}" for r in weak)
        out.append("not significant: the compute-optimal allocation's gain over 20 tokens per parameter is inside "
                   f"the bootstrap noise at {budgets} FLOPs; no allocation wins there")
    return out


def predictions_rows(fitted: FittedLaw, points: Sequence[dict[str, float]], info: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Predicted value at each input point, with its bootstrap interval when replicates exist, and its distance
    past the fitted runs, calibrated interval and verdict when `info` (fit_info) is given."""
    rows = []
    for x in points:
        row = {**x, "prediction": float(fitted.predict(**x)[0])}
        if fitted.boot_BxP is not None:
            lo, hi = fitted.interval(LEVEL, **x)
            row["prediction_lo"], row["prediction_hi"] = float(lo[0]), float(hi[0])
        if info is not None:
            boot = (row["prediction_lo"], row["prediction_hi"]) if "prediction_lo" in row else None
            row.update(judged(fitted, info, x, row["prediction"], boot=boot))
        rows.append(row)
    return rows


def print_fit(fitted: FittedLaw, title: str, console: Console | None = None) -> None:
    """Parameters, fit quality and warnings of one fitted law."""
    console = console or make_console()
    console.print(params_table(fitted, title))
    console.print(quality_line(fitted))
    for w in fitted.warnings:
        console.print(f"[yellow]warning:[/yellow] {w}")
