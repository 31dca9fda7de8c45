"""Reports of fitted laws: parameters with intervals, fit error, warnings, compute-optimal rows, predictions."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from rich.console import Console
from rich.table import Table

from ladderlab.console import fmt, make_console
from ladderlab.scaling.engine.law import FittedLaw, percentile_interval
from ladderlab.scaling.laws.chinchilla import compute_optimal

LEVEL = 0.9


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


def compute_optimal_rows(fitted: FittedLaw, budgets: Sequence[float]) -> list[dict[str, Any]]:
    """Compute-optimal N, D, tokens per parameter and loss at each FLOP budget, with bootstrap intervals."""
    c = np.asarray(budgets, float)
    n, d = compute_optimal(fitted.params, c)
    rows = [
        {"flops": float(ci), "N": float(ni), "D": float(di), "tokens_per_param": float(di / ni), "loss": float(li)}
        for ci, ni, di, li in zip(c, n, d, fitted.predict(N=n, D=d))
    ]
    if fitted.boot_BxP is not None:
        samples = [compute_optimal(fitted.law.to_public(t), c) for t in fitted.boot_BxP]
        n_b = np.array([s[0] for s in samples])
        d_b = np.array([s[1] for s in samples])
        for key, arr in (("N", n_b), ("D", d_b), ("tokens_per_param", d_b / n_b)):
            lo, hi = percentile_interval(arr, LEVEL)
            for row, a, b in zip(rows, lo, hi):
                row[f"{key}_lo"], row[f"{key}_hi"] = float(a), float(b)
    return rows


def predictions_rows(fitted: FittedLaw, points: Sequence[dict[str, float]]) -> list[dict[str, Any]]:
    """Predicted value at each input point, with its bootstrap interval when replicates exist."""
    rows = []
    for x in points:
        row = {**x, "prediction": float(fitted.predict(**x)[0])}
        if fitted.boot_BxP is not None:
            lo, hi = fitted.interval(LEVEL, **x)
            row["prediction_lo"], row["prediction_hi"] = float(lo[0]), float(hi[0])
        rows.append(row)
    return rows


def print_fit(fitted: FittedLaw, title: str, console: Console | None = None) -> None:
    """Parameters, fit quality and warnings of one fitted law."""
    console = console or make_console()
    console.print(params_table(fitted, title))
    console.print(quality_line(fitted))
    for w in fitted.warnings:
        console.print(f"[yellow]warning:[/yellow] {w}")
