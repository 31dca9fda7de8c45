"""Command-line reports for mixing laws, mixture-scaling laws, optimal mixtures and critical mixture ratios."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from ladderlab.console import fmt, rows_table
from ladderlab.scaling.mixing.cmr import CMRResult
from ladderlab.scaling.mixing.model import MixingModel, model_name
from ladderlab.scaling.mixing.mixture_scaling import FORMULAS, MixtureScaling
from ladderlab.scaling.mixing.optimize import MixturePrediction
from ladderlab.scaling.mixing.separation import separation_text


def print_mixing(model: MixingModel, title: str, console: Console) -> None:
    """Per validation column: the chosen law, its in-sample fit and the held-out scores of every candidate."""
    candidates = [m for m in ("plain", "log", "implicit") if any(m in scores for scores in model.cv.values())]
    table = Table(title=title, title_justify="left")
    for col in ["column", "law", "params", "fit RMSE(log)", *(f"CV {m} RMSE / Spearman" for m in candidates)]:
        table.add_column(col, justify="right")
    for col, fitted in model.laws.items():
        cv = [model.cv[col].get(m) for m in candidates]
        table.add_row(col, model_name(fitted.law), str(len(fitted.law.params)), fmt(fitted.rmse_log),
                      *("-" if s is None else f"{fmt(s['rmse_log'])} / {s['spearman']:.4f}" for s in cv))
    console.print(table)
    for col, fitted in model.laws.items():
        for w in fitted.warnings:
            console.print(f"[yellow]warning:[/yellow] {col}: {w}")
    for w in model.warnings:
        console.print(f"[yellow]warning:[/yellow] {w}")


def print_optimum(pred: MixturePrediction, console: Console, level: float = 0.9) -> None:
    """The optimal shares (largest first) and the predicted losses there with their intervals; for a
    mixture-scaling law also whether the fitted mixtures are told apart there."""
    shares = sorted(pred.ratios.items(), key=lambda kv: -kv[1])
    console.print(_share_table(shares))
    source = "held-out errors" if pred.model is not None else "the law's draws"
    table = Table(title=f"predicted losses at the optimum ({int(level * 100)}% interval from {source})",
                  title_justify="left")
    table.add_column("column")
    table.add_column("loss", justify="right")
    for c, v in pred.losses.items():
        table.add_row(c, f"{fmt(v)} [{fmt(pred.intervals[c][0])}, {fmt(pred.intervals[c][1])}]")
    console.print(table)
    target = ", ".join(f"{w:g} x {c}" for c, w in pred.target.items())
    console.print(f"target {target}: {fmt(pred.loss)} [{fmt(pred.interval[0])}, {fmt(pred.interval[1])}]")
    if pred.significance is not None:
        gains = ", ".join(f"{name} {fmt(v['gain'])} (not positive in {v['flip_share']:.0%} of draws)"
                          for name, v in pred.significance["against"].items())
        verdict = "significant" if pred.significance["significant"] else "not significant"
        console.print(f"optimum {verdict}: gain over {gains}")
    text = None if pred.separation is None else separation_text("target", pred.separation, "this run")
    if text:
        console.print(f"verdict: {text}")
    for w in pred.warnings:
        console.print(f"[yellow]warning:[/yellow] {w}")


def print_mixture_scaling(model: MixtureScaling) -> None:
    """The chosen form and why, both forms' held-out scores, then the chosen form's fit per loss column."""
    choice = model.choice
    print(f"form: {model.form} ({FORMULAS[model.form]}); {choice['reason']}")
    if choice["held_out"]:
        held = choice["held_out"]
        print(f"  backtest: fitted on N = {', '.join(f'{v:.4g}' for v in held['fitted_sizes'])}, scored on "
              f"{held['runs']} runs of N = {held['N']:.4g} ({held['scored']})")
        for form, errors in choice["errors"].items():
            for col, s in (errors or {}).get("columns", {}).items():
                cov = "-" if s["coverage_90"] is None else f"{s['coverage_90']:.0%}"
                rho = "-" if s["spearman"] is None else f"{s['spearman']:.3f}"
                print(f"  {form:6s} {col}: held-out MAPE {s['mape']:.3g}%, 90% coverage {cov}, Spearman {rho}")
    if model.form == "joint":
        for col, fitted in model.joint.items():
            ci = fitted.param_intervals(0.9)
            cells = [f"{k}={v:.4g}" + (f" [{ci[k][0]:.4g}, {ci[k][1]:.4g}]" if k in ci else "")
                     for k, v in fitted.params.items()]
            print(f"  {col}: " + ", ".join(cells) + f"; rmse(log) {fitted.rmse_log:.3g}")
    else:
        for col, steps in model.nested.steps.items():
            print(f"  {col}: {len(steps)} step laws (one per run); size and mixing laws are fitted at --at")
    for w in model.warnings:
        print(f"  warning: {w}")


def _share_table(shares: list[tuple[str, float]]) -> Table:
    table = Table(title="optimal mixture", title_justify="left")
    table.add_column("domain")
    table.add_column("share", justify="right")
    for d, v in shares:
        table.add_row(d, f"{v:.4f}")
    return table


def print_cmr(res: CMRResult, console: Console) -> None:
    """The CMR with its interval, the losses there, the forms chosen (held-out errors) and the CMR-vs-tokens curve."""
    size = "" if res.size is None else f", N = {res.size:.4g}"
    console.print(f"critical mixture ratio at T = {res.tokens:.4g}{size}, tolerance {res.tolerance:g}: "
                  f"{res.ratio:.4f} [{res.interval[0]:.4f}, {res.interval[1]:.4f}]")
    console.print(f"general-loss change there {fmt(res.general_increase)}"
                  + ("" if res.domain_loss is None else f", domain loss {fmt(res.domain_loss)}"))
    errors = ", ".join(f"{f} {e:.4g}" for f, e in res.held_out.items())
    console.print(f"general-loss form: {res.form}" + (f" (held-out RMSE over runs: {errors})" if errors else "")
                  + ("" if res.domain_form is None else f"; domain-loss form: {res.domain_form}"))
    for w in res.warnings:
        console.print(f"[yellow]warning:[/yellow] {w}")
    console.print(rows_table(res.curve, "CMR against CPT tokens", ["tokens", "ratio"]))
