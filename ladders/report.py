"""`ladderlab report DIR`: fit a finished ladder's laws and write tables, PNG plots and a Markdown summary.

Reads only the results folder (runs.csv, ladder.json, each run's result.json), never JAX, so it works on any
machine the folder is copied to. Scaling law: Chinchilla L(N, D) on the main mixture's final losses, with the
largest run held out and predicted from the others. Mixing law: the mixtures trained at the smallest size and
multiple, fitted per validation domain and optimised for the mean validation loss. Task laws: each multiple-choice
task's accuracy through its bits per byte (`scaling.tasks`, runs.csv's loss/<task> and acc/<task>), the same run
held out. report.md carries every fit's warnings, the parameters with their intervals, each mixture's shares, every check (predicted with its 90%
interval against the actual; the scaling law's is calibrated on backtests, `scaling.backtest`) and says which
actual values fall outside their interval. A ladder tracked by W&B (its runs' `wandb_project`) also gets the report
logged there (`tracking.log_report`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import numpy as np
from rich.console import Console
from rich.table import Table

from ladderlab.console import make_console
from ladderlab.data.config import DataConfig
from ladderlab.data.mixture import normalise
from ladderlab.errors import LadderlabError
from ladderlab.ladders.config import LadderConfig
from ladderlab.ladders.plan import mixtures
from ladderlab.ladders.plots import Curve, plot_curves, plot_predicted, plot_scaling
from ladderlab.ladders.report_md import markdown
from ladderlab.ladders.run.tracking import log_report
from ladderlab.ladders.store import LadderStore, write_atomic
from ladderlab.scaling import report as fit_report
from ladderlab.scaling.api import fit, judge
from ladderlab.scaling.tables.runs import Runs, read_runs

MIN_FIT_RUNS = 6  # the Chinchilla law has 5 parameters


def inside(actual: float, interval: tuple[float, float] | list[float]) -> bool | None:
    """Whether `actual` lies in the closed interval; None when there is none (no bootstrap: NaN bounds)."""
    lo, hi = interval
    return bool(lo <= actual <= hi) if np.isfinite(lo) and np.isfinite(hi) else None


def verdict(actual: float, interval: tuple[float, float] | list[float], what: str = "the actual value") -> str:
    """The plain sentence a check ends with: `what` inside or outside (above / below) the 90% interval."""
    where = inside(actual, interval)
    if where is None:
        return "no interval (fitted without bootstrap)"
    if where:
        return f"{what} is inside the 90% interval"
    return f"{what} is OUTSIDE the 90% interval ({'above' if actual > interval[1] else 'below'} it)"


def final_rows(runs: Runs) -> list[dict[str, Any]]:
    """Each run's last row (its final evaluation), in table order."""
    return [{c: runs.cols[c][runs.rows_of(r)[-1]] for c in runs.cols} for r in runs.run_ids]


def final_table(final: list[dict]) -> Table:
    """The runs' final losses as a rich table."""
    table = Table(title=f"final losses ({len(final)} runs)", title_justify="left")
    for col in ("run", "N", "D", "steps", "loss"):
        table.add_column(col, justify="left" if col == "run" else "right")
    for r in final:
        table.add_row(str(r["run"]), f"{r['N']:,.0f}", f"{r['D']:,.0f}", f"{r['step']:.0f}", f"{r['loss']:.4f}")
    return table


def at_bound(warnings: list[str]) -> list[str]:
    """The parameters that a fit's `warnings` say are at a bound (not identified by its runs)."""
    return [w.split()[1] for w in warnings if "at its bound" in w]


def scaling_section(final: list[dict], main: str, bootstrap: int, seed: int, console: Console) -> dict[str, Any]:
    """Fit L(N, D) to the main mixture's runs except the largest, and predict that one. The law is Chinchilla's,
    or Kaplan's when Chinchilla's has a parameter at a bound and Kaplan's has none (an identified law, chosen
    before the held-out run is looked at); the Chinchilla fit is kept in the summary as `rejected`."""
    rows = [r for r in final if r["mixture"] == main]
    if len(rows) < MIN_FIT_RUNS + 1:
        msg = f"scaling law skipped: {len(rows)} runs of mixture {main!r}; need {MIN_FIT_RUNS + 1} (one held out)"
        console.print(msg)
        return {"skipped": msg}
    held = max(range(len(rows)), key=lambda i: (rows[i]["N"], rows[i]["D"]))
    fit_rows = [r for i, r in enumerate(rows) if i != held]
    x = {"N": np.array([r["N"] for r in fit_rows], float), "D": np.array([r["D"] for r in fit_rows], float)}
    y = np.array([r["loss"] for r in fit_rows], float)
    fitted, rejected = fit("chinchilla", x, y, bootstrap=bootstrap, seed=seed), None
    if at_bound(fitted.warnings):
        kaplan = fit("kaplan", x, y, bootstrap=bootstrap, seed=seed)
        if not at_bound(kaplan.warnings):
            fitted, rejected = kaplan, fitted
            console.print(f"Chinchilla's law has {', '.join(at_bound(rejected.warnings))} at its bound (not "
                          "identified by these runs; why: below), Kaplan's form has no parameter at a bound: the "
                          "report uses Kaplan's")
    fit_report.print_fit(fitted, f"scaling law L(N, D) ({fitted.law.name}) on {len(fit_rows)} runs of mixture "
                                 f"{main!r} (mean validation loss, nats/token)", console)
    h = rows[held]
    (point,) = judge(fitted, x, y, [{"N": float(h["N"]), "D": float(h["D"])}])
    error = 100 * (point["prediction"] - h["loss"]) / h["loss"]
    key = "calibrated" if "calibrated_lo" in point else "prediction"  # calibrated: a fit on at least 3 sizes
    kind = "calibrated" if key == "calibrated" else "bootstrap"
    interval = (point.get(f"{key}_lo", np.nan), point.get(f"{key}_hi", np.nan))
    line = (f"held-out check: {h['run']} (N={h['N']:,.0f}, D={h['D']:,.0f}), the largest run, predicted from the "
            f"other {len(fit_rows)}: loss {point['prediction']:.4f}"
            + (f" ({kind} 90% interval {interval[0]:.4f}-{interval[1]:.4f})" if np.isfinite(interval).all() else "")
            + f", actual {h['loss']:.4f}, error {error:+.2f}%; {verdict(h['loss'], interval, 'the actual loss')}")
    console.print(line)
    return {"law": fitted.law.name, "fit": fitted.to_json(), "fitted": fitted,
            "quality": fit_report.quality_line(fitted), "warnings": list(fitted.warnings),
            **({"rejected": {"law": rejected.law.name, "params": rejected.params, "warnings": rejected.warnings}}
               if rejected else {}),
            "held_out": {"run": str(h["run"]), "N": float(h["N"]),
            "D": float(h["D"]), "actual": float(h["loss"]), "prediction": point["prediction"],
            "interval": [float(v) for v in interval], "interval_kind": kind, "level": fit_report.LEVEL,
            "error_pct": error, "inside": inside(h["loss"], interval)},
            "line": line,
            "points": {"N": [r["N"] for r in rows], "D": [r["D"] for r in rows], "loss": [r["loss"] for r in rows],
                       "held_out": [i == held for i in range(len(rows))]}}


def scale_note(final: list[dict[str, Any]], main: str, warnings: list[str], replaced: bool = False) -> str | None:
    """Why Chinchilla's law has a parameter at a bound on a ladder, measured on its own runs (`final`: the runs
    without variants, as `make_report` passes them; `warnings`: that fit's; None when no parameter is at a bound):
    each size's loss drop per doubling of D between successive multiples. The additive law gives every size the same
    drop at the same D, shrinking as D grows; runs whose drops do not follow that cannot identify E. `replaced`:
    Kaplan's form was fitted instead."""
    bound = at_bound(warnings)
    rows = [r for r in final if r["mixture"] == main]
    if not bound or not rows:
        return None
    drops = {}
    for n in sorted({r["N"] for r in rows}):
        runs = sorted((r["D"], r["loss"]) for r in rows if r["N"] == n)
        drops[n] = [(f"{d0:.3g}", (l0 - l1) / np.log2(d1 / d0)) for (d0, l0), (d1, l1) in zip(runs, runs[1:])]
    per_size = "; ".join(f"N={n:,.0f}: " + ", ".join(f"{v:.3f} from D={d}" for d, v in ds) for n, ds in drops.items() if ds)
    return (f"{', '.join(bound)} at {'its bound' if len(bound) == 1 else 'their bounds'} because the runs' loss drop "
            f"per doubling of D depends on N ({per_size}), while L = E + A/N^alpha + B/D^beta gives every size the "
            "same drop at the same D, and a smaller drop at a larger D. Sizes this small (a 15-minute CPU demo's) "
            "are still in that regime; " + ("Kaplan's form, whose drop per doubling of D grows with N, is identified "
                                            "on them and used instead." if replaced else
                                            "a ladder whose law is identified needs larger sizes (an accelerator)."))


def mixing_section(final: list[dict], mixtures: dict[str, dict[str, float]], main: str, seed: int,
                   console: Console) -> dict[str, Any]:
    """Fit mixing laws to the runs at the smallest size and multiple and find the mixture with the lowest mean
    validation loss (within the shares the runs cover)."""
    from ladderlab.scaling.mixing.optimize import predict_mixture

    n0 = min(r["N"] for r in final)
    m0 = min(r["multiple"] for r in final if r["N"] == n0)
    cell = [r for r in final if r["N"] == n0 and r["multiple"] == m0]
    val = sorted(c for c in cell[0] if c.startswith("val/"))
    domains = [c[4:] for c in val]
    shares = [normalise(mixtures[str(r["mixture"])], domains) for r in cell]
    used = [d for d in domains if any(s[d] > 0 for s in shares)]
    if len(cell) < len(used) + 2:
        msg = (f"mixing law skipped: {len(cell)} runs at the smallest size and multiple; the law over {len(used)} "
               f"domains needs {len(used) + 2}")
        console.print(msg)
        return {"skipped": msg}
    props = {d: np.array([s[d] for s in shares]) for d in used}
    best = predict_mixture(props, {c: np.array([r[c] for r in cell], float) for c in val}, seed=seed)
    main_rows = [r["loss"] for r in cell if r["mixture"] == main]
    main_loss = float(np.mean(main_rows)) if main_rows else float("nan")
    main_shares = normalise(mixtures[main], domains)
    main_pred = float(best.model.predict_target(np.array([[main_shares[d] for d in used]]), best.target)[0])
    mix = ", ".join(f"{d} {v:.2f}" for d, v in best.ratios.items())
    line = (f"mixing law on {len(cell)} runs at N={n0:,.0f}, {m0:g}xC: best mixture {mix}; predicted mean validation "
            f"loss {best.loss:.4f} (90% interval {best.interval[0]:.4f}-{best.interval[1]:.4f}) vs {main_pred:.4f} "
            f"predicted and {main_loss:.4f} actual for {main!r}")
    console.print(line)
    model = best.model
    warnings = [f"{c}: {w}" for c, law in model.laws.items() for w in law.warnings] + model.warnings + best.warnings
    for w in warnings:
        console.print(f"[yellow]warning:[/yellow] {w}")
    return {"prediction": best, "ratios": best.ratios, "loss": best.loss, "interval": list(best.interval),
            "main_loss": main_loss, "main_predicted": main_pred, "N": float(n0), "multiple": float(m0),
            "runs": len(cell), "warnings": warnings, "line": line}


def task_section(runs: Runs, main: str, held_run: str, bootstrap: int, seed: int, console: Console) -> dict[str, Any]:
    """Two-step task laws on the main mixture's runs except `held_run` (each multiple-choice task of runs.csv: its
    bits per byte, then its accuracy), and that run's final accuracy predicted against its actual one. Step 1 takes
    each run's final evaluation and step 2 every evaluation after the first, unsmoothed (a ladder's evaluations are
    few and each covers the whole eval set)."""
    from ladderlab.scaling.tasks import laws as tasks

    plain = runs.select((runs["mixture"] == main) & (runs["operator"] == "scratch") & (runs["base_run"] == "")
                        if "operator" in runs.cols else runs["mixture"] == main)
    names = plain.tasks
    if not names or held_run not in plain.run_ids:
        return {"tasks": {}, "skipped": "task laws skipped: no task columns (loss/<task>, acc/<task>) in runs.csv"}
    fit_runs = plain.select(plain["run"] != held_run)
    try:
        laws = tasks.fit(fit_runs, names, bootstrap, seed, max_width=1.0, last=1, window=1)
    except LadderlabError as e:  # e.g. one evaluation per run leaves step 2 no points
        console.print(f"task laws skipped: {e}")
        return {"tasks": {}, "skipped": f"task laws skipped: {e}"}
    final = plain.rows_of(held_run)[-1]
    n, d = float(plain["N"][final]), float(plain["D"][final])
    rows = {}
    for task, p in laws.predict(n, d).items():
        actual = float(plain[f"acc/{task}"][final])
        rows[task] = {**p.to_json(), "actual_loss": float(plain[f"loss/{task}"][final]), "actual_acc": actual,
                      "acc_error": p.acc - actual, "inside": inside(actual, (p.acc_lo, p.acc_hi))}
    table = Table(title=f"task laws: accuracy (%) of {held_run}, predicted from the other "
                        f"{len(fit_runs.run_ids)} runs (90% intervals)", title_justify="left")
    for col in ("task", "bits/byte", "actual", "accuracy [interval]", "actual", "error"):
        table.add_column(col, justify="left" if col == "task" else "right", no_wrap=True)
    for task, r in rows.items():
        table.add_row(task, f"{r['loss']:.3f}", f"{r['actual_loss']:.3f}",
                      f"{100 * r['acc']:.1f} [{100 * r['acc_lo']:.1f}, {100 * r['acc_hi']:.1f}]",
                      f"{100 * r['actual_acc']:.1f}", f"{100 * r['acc_error']:+.1f}")
    console.print(table)
    errors = [abs(100 * r["acc_error"]) for r in rows.values()]
    outside = [f"{t} (actual {100 * r['actual_acc']:.1f}, interval {100 * r['acc_lo']:.1f}-{100 * r['acc_hi']:.1f})"
               for t, r in rows.items() if r["inside"] is False]
    line = (f"held-out task check: {held_run}'s accuracy on {len(rows)} tasks predicted with mean "
            f"|error| {np.mean(errors):.2f} points (max {max(errors):.2f}); "
            f"{sum(r['inside'] is True for r in rows.values())}/{len(rows)} inside the 90% interval"
            + (f"; OUTSIDE it: {', '.join(outside)}" if outside else ""))
    console.print(line)
    warnings = [f"{t}: {w}" for t, law in laws.laws.items() for w in [*law.step1.warnings, *law.step2.warnings]]
    for w in warnings:
        console.print(f"[yellow]warning:[/yellow] {w}")
    return {"run": held_run, "N": n, "D": d, "tasks": rows, "mean_abs_error_pts": float(np.mean(errors)),
            "warnings": warnings, "line": line}


def target_section(scaling: dict, mixing: dict, target_n: float, target_d: float, console: Console) -> dict[str, Any]:
    """The larger target: its loss from the scaling law with the main mixture, and with the best mixture by the
    mixing law's predicted ratio best / main (mixture rankings carry over from small to large models, as RegMix
    found)."""
    if "fitted" not in scaling:
        return {}
    fitted = scaling["fitted"]
    (point,) = fit_report.predictions_rows(fitted, [{"N": target_n, "D": target_d}])
    out = {"N": target_n, "D": target_d, "main_loss": point["prediction"]}
    line = f"target N={target_n:,.0f}, D={target_d:,.0f}: predicted loss {point['prediction']:.4f} with the main mixture"
    if "ratios" in mixing:
        out["best_loss"] = point["prediction"] * mixing["loss"] / mixing["main_predicted"]
        out["best_mixture"] = mixing["ratios"]
        line += f", {out['best_loss']:.4f} with the best mixture"
    console.print(line)
    return {**out, "line": line}


def make_report(root: str | Path, *, bootstrap: int = 100, seed: int = 0, target_n: float = 0.0,
                console: Console | None = None,
                check: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> dict[str, Any]:
    """Fit, print and write `root`/report/ (report.md, summary.json, PNGs); return the summary. `check`, when
    given, is called with the mixing section once a best mixture is found (`demo.check_mixture` trains it) and its
    result (predicted, interval, actual, line) is reported as the mixture check."""
    console = console or make_console()
    store = LadderStore(root)
    meta = store.meta()
    if not (store.root / "runs.csv").is_file():
        raise LadderlabError(f"{root}: no finished runs yet (no runs.csv); run `ladderlab ladder run` first")
    runs, cfg = read_runs(store.root / "runs.csv"), meta["config"]
    mixes = mixtures(ladder_config(cfg))
    main = next(iter(mixes))
    final = final_rows(runs)
    out = store.root / "report"
    out.mkdir(exist_ok=True)
    console.print(final_table(final))
    plain = [r for r in final if r.get("operator", "scratch") == "scratch" and not r.get("base_run")]  # no variants
    scaling = scaling_section(plain, main, bootstrap, seed, console)
    rejected = scaling.get("rejected")
    why = scale_note(plain, main, (rejected or scaling)["warnings"] if "fit" in scaling else [], rejected is not None)
    if why:
        scaling["why"] = why
        console.print(f"[yellow]why:[/yellow] {why}")
    mixing = mixing_section(plain, mixes, main, seed, console)
    held = scaling.get("held_out", {}).get("run")
    task = task_section(runs, main, held, bootstrap, seed, console) if held else \
        {"tasks": {}, "skipped": "task laws skipped: no held-out run (the scaling law was not fitted)"}
    largest = max(r["N"] for r in final)
    target_n = target_n or 10 * largest
    target = target_section(scaling, mixing, target_n, cfg["tokens_per_param"] * target_n, console)
    summary = {"name": meta["name"], "runs": len(final), "final": [_plain(r) for r in final],
               "mixtures": mixture_shares(final, mixes, cfg.get("cpt") or {}, mixing),
               "scaling": {k: v for k, v in scaling.items() if k not in ("fitted", "points")},
               "mixing": {k: v for k, v in mixing.items() if k != "prediction"}, "tasks": task, "target": target}
    if check is not None and "ratios" in mixing:
        summary["mixture_check"] = check(summary["mixing"])
    summary["plots"] = _plots(store, meta, runs, main, scaling, mixing, out)
    write_atomic(out / "summary.json", json.dumps(_plain(summary), indent=1))
    write_atomic(out / "report.md", markdown(summary))
    console.print(f"report: {out / 'report.md'} ({len(summary['plots'])} plots)")
    tracked = log_report(store.run_dir(meta["plan"][0]["run"]), out, summary)
    if tracked:
        console.print(f"report: logged to W&B as run {tracked}")
    return _plain(summary)


def mixture_shares(final: list[dict], mixes: dict[str, dict[str, float]], cpt: dict[str, dict],
                   mixing: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Each trained mixture's shares over the validation domains (the names `mix1`... stand for), CPT phases'
    mixtures, and the mixing law's best mixture."""
    domains = sorted(c[4:] for c in final[0] if c.startswith("val/"))
    named = {**mixes, **{name: phase["mixture"] for name, phase in cpt.items()}}
    trained = dict.fromkeys(str(r["mixture"]) for r in final)
    out = {m: normalise(named[m], domains) for m in trained if m in named}
    if "ratios" in mixing:
        out["best (mixing law)"] = {d: mixing["ratios"].get(d, 0.0) for d in domains}
    return out


def _plots(store: LadderStore, meta: dict, runs: Runs, main: str, scaling: dict, mixing: dict, out: Path) -> list[str]:
    from ladderlab.scaling.mixing.plot import plot_landscape

    written, curves = [], []
    seq_len = meta["config"]["data.seq_len"]
    for r in meta["plan"]:
        done = store.result(r["run"])
        if done and done["train_curve"] and r["run"] in runs.run_ids:
            steps, loss = np.array(done["train_curve"], float).T
            rows = runs.rows_of(r["run"])
            curves.append(Curve(r["run"], float(r["N"]), float(r["multiple"]), str(r["mixture"]),
                                bool(r.get("operator") or r.get("base_run")),
                                (r.get("tokens_before", 0) + steps * r["batch"] * seq_len, loss),
                                (runs["D"][rows], runs["loss"][rows])))
    if curves:
        plot_curves(curves, main, out / "loss_curves.png")
        written.append("loss_curves.png")
    if "fitted" in scaling:
        fitted, p = scaling["fitted"], scaling["points"]
        held = np.array(p["held_out"])
        x = {"N": np.array(p["N"], float), "D": np.array(p["D"], float)}
        y = np.array(p["loss"], float)
        lo, hi = (fitted.interval(fit_report.LEVEL, **x) if fitted.boot_BxP is not None
                  else (np.full_like(y, np.nan), np.full_like(y, np.nan)))
        lo[held], hi[held] = scaling["held_out"]["interval"]  # the held-out run's interval as the check states it
        fit_x = {k: v[~held] for k, v in x.items()}
        plot_scaling(fitted, fit_x, y[~held], scaling["held_out"], out / "scaling_fit.png")
        plot_predicted(y, fitted.predict(**x), lo, hi, held, scaling["held_out"], out / "predicted_vs_actual.png")
        written += ["scaling_fit.png", "predicted_vs_actual.png"]
    if "prediction" in mixing:
        plot_landscape(mixing["prediction"].model, mixing["prediction"], out / "mixture_landscape.png")
        written.append("mixture_landscape.png")
    return written


def ladder_config(fingerprint: dict[str, Any]) -> LadderConfig:
    """The LadderConfig of a results folder's ladder.json fingerprint (`store.fingerprint`: data fields dotted)."""
    data = {k.removeprefix("data."): _tuple(v) for k, v in fingerprint.items() if k.startswith("data.")}
    rest = {k: _tuple(v) for k, v in fingerprint.items() if not k.startswith("data.")}
    return LadderConfig(**rest, data=DataConfig(**data))


def _tuple(v: Any) -> Any:
    """JSON lists back to the tuples LadderConfig holds."""
    return tuple(v) if isinstance(v, list) else v


def _plain(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    return v
