"""`ladderlab demo --bundled`: fit laws on bundled real training runs and check a held-out prediction.

Fits the Chinchilla law on the over-training runs (Gadre et al. 2024) of at most `max_fit_params` parameters,
predicts the larger held-out runs with calibrated 90% intervals (scaling/backtest/calibration.py), and refits the
data-constrained law on the datablations 182-run set (Muennighoff et al. 2023) against its published R_D* and R_N*.
Given a folder, it writes summary.json, report.txt (what it printed) and each fit's plot there.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from ladderlab.console import make_console, rows_table
from ladderlab.errors import LadderlabError
from ladderlab.scaling import report
from ladderlab.scaling.api import fit, judge
from ladderlab.scaling.backtest.verdict import inside
from ladderlab.scaling.laws.data_constrained import PUBLISHED_BASE, PUBLISHED_R
from ladderlab.scaling.plot import plot_fit
from ladderlab.scaling.tables.columns import read_columns

BUNDLED = Path(__file__).resolve().parent / "bundled"


@dataclass(frozen=True)
class BundledDemoConfig:
    """What the demo fits: which runs, which loss, where the held-out split falls, how many bootstrap refits."""

    dataset: str = "c4_original"
    valset: str = "c4_val"
    n_column: str = "params_no_embed"  # non-embedding parameters fit these small runs far better than total
    max_fit_params: float = 160e6
    bootstrap: int = 200
    seed: int = 0
    budgets: tuple[float, ...] = (1e21, 1e22, 1e23, 1e24)


def run_bundled_demo(cfg: BundledDemoConfig, console: Console | None = None,
                     out: str | Path | None = None) -> dict[str, Any]:
    """Print the demo report (and write it with the plots and summary.json into `out`); return its numbers."""
    console = console or make_console()
    folder = Path(out) if out else None
    if folder:
        folder.mkdir(parents=True, exist_ok=True)
        console.record = True  # report.txt holds what is printed from here on
    doc = {"overtraining": _overtraining(cfg, console, folder),
           "data_constrained": _data_constrained(cfg, console, folder)}
    if folder:
        (folder / "summary.json").write_text(json.dumps(doc, indent=2))
        console.save_text(str(folder / "report.txt"))
        console.print(f"wrote {folder}/: summary.json, report.txt, overtraining.png, data_constrained.png")
    return doc


def _overtraining(cfg: BundledDemoConfig, console: Console, out: Path | None) -> dict[str, Any]:
    path = BUNDLED / "gadre2024_overtraining.csv"
    loss = f"loss_{cfg.valset}"
    t = read_columns(path, ["params", cfg.n_column, "tokens", loss], text=["dataset"])
    rows = t["dataset"] == cfg.dataset
    if not rows.any():
        raise LadderlabError(f"{path}: no runs of dataset {cfg.dataset!r} (has {sorted(set(t['dataset']))})")
    n, d, y = t[cfg.n_column][rows], t["tokens"][rows], t[loss][rows]
    train = t["params"][rows] <= cfg.max_fit_params
    fitted = fit("chinchilla", {"N": n[train], "D": d[train]}, y[train], bootstrap=cfg.bootstrap, seed=cfg.seed)
    report.print_fit(fitted, f"Chinchilla law: {cfg.dataset} runs <= {cfg.max_fit_params:.3g} params, {loss}", console)
    if out:
        plot_fit(fitted, {"N": n[train], "D": d[train]}, y[train], out / "overtraining.png")
    optimal = report.compute_optimal_rows(fitted, cfg.budgets)
    console.print(rows_table(optimal, "compute-optimal allocation", ["flops", "N", "D", "tokens_per_param", "loss"]))

    held = [{"N": float(a), "D": float(b), "actual": float(c)} for a, b, c in zip(n[~train], d[~train], y[~train])]
    preds = judge(fitted, {"N": n[train], "D": d[train]}, y[train], [{"N": h["N"], "D": h["D"]} for h in held])
    for h, p in zip(held, preds):
        h.update(prediction=p["prediction"], interval=[p["calibrated_lo"], p["calibrated_hi"]],
                 interval_kind="calibrated", level=report.LEVEL, verdict=p["verdict"])
        h["error_pct"] = 100 * (h["prediction"] - h["actual"]) / h["actual"]
        h["check"] = inside(h["actual"], *h["interval"])
    shown = [{**h, "prediction_lo": h["interval"][0], "prediction_hi": h["interval"][1]} for h in held]
    console.print(rows_table(shown, "held-out larger runs: prediction with its calibrated 90% interval",
                             ["N", "D", "actual", "prediction", "error_pct", "check"]))
    mape = float(np.mean([abs(h["error_pct"]) for h in held])) if held else float("nan")
    covered = sum(h["check"] == "inside" for h in held)
    console.print(
        f"held-out check: {len(held)} runs above {cfg.max_fit_params:.3g} params predicted with mean abs error "
        f"{mape:.2f}%; {covered}/{len(held)} actuals inside the calibrated 90% interval (from the backtests, "
        f"level {report.LEVEL})"
    )
    return {"fit": fitted.to_json(), "compute_optimal": optimal, "held_out": held, "held_out_mape": mape}


def _data_constrained(cfg: BundledDemoConfig, console: Console, out: Path | None) -> dict[str, Any]:
    t = read_columns(BUNDLED / "datablations_c4_fit182.csv", ["params_N", "tokens_D", "unique_tokens_U", "final_val_loss"])
    x = {"N": t["params_N"], "D": t["tokens_D"], "U": t["unique_tokens_U"]}
    fitted = fit(
        "data-constrained", x, t["final_val_loss"], fixed=PUBLISHED_BASE, bootstrap=cfg.bootstrap, seed=cfg.seed
    )
    report.print_fit(fitted, "data-constrained law on the datablations 182 runs (published base held fixed)", console)
    if out:
        plot_fit(fitted, x, t["final_val_loss"], out / "data_constrained.png")
    published = fitted.law.to_internal({**PUBLISHED_BASE, **PUBLISHED_R})
    at_published = float(fitted.objective_at(published, x, t["final_val_loss"]))
    console.print(
        f"published R_D* {PUBLISHED_R['R_D*']:.4g}, R_N* {PUBLISHED_R['R_N*']:.4g}: objective {at_published:.6g}; "
        f"ours R_D* {fitted.params['R_D*']:.4g}, R_N* {fitted.params['R_N*']:.4g}: objective {fitted.objective:.6g} "
        "(the objective is nearly flat along a valley in R_D* x R_N*)"
    )
    return {"fit": fitted.to_json(), "published": PUBLISHED_R, "objective_at_published": at_published}
