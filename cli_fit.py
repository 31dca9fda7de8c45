"""`ladderlab fit` (chinchilla, kaplan, data-constrained, step, size, compute) and `ladderlab predict loss / tasks`."""

from __future__ import annotations

import argparse
from typing import Any, Sequence

from ladderlab.cli_args import add_group, floats_arg, names_arg, point_arg, size_arg, write_json
from ladderlab.errors import LadderlabError

BUDGETS = (1e20, 1e21, 1e22, 1e23, 1e24)
ONE_D = {"step": ("steps", "S"), "size": ("n", "N"), "compute": ("flops", "C")}


def _common_fit_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--csv", "--runs", dest="csv", required=True, metavar="CSV", help="results table, one row per run")
    p.add_argument("--loss", required=True, help="loss column")
    p.add_argument("--where", action="append", default=[], metavar="COL<op>VALUE",
                   help="keep rows where COL = TEXT, != TEXT, or <, <=, >, >= NUMBER (repeatable)")
    p.add_argument("--drop-highest", type=int, default=0, metavar="K", help="drop the K highest-loss rows")
    p.add_argument("--bootstrap", type=int, default=200, metavar="B", help="bootstrap refits over runs (0: none)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("--workers", type=int, default=None, help="bootstrap processes (default: all cores)")
    p.add_argument("--json", metavar="OUT", help="write the fitted law as JSON")
    p.add_argument("--plot", metavar="OUT.png", help="plot data, fit and extrapolation")


def add_parsers(sub: Any) -> tuple[Any, Any]:
    """Adds `fit` and `predict` with their scaling-law subcommands; returns both groups for the mixture ones."""
    laws = add_group(sub, "fit", "fit a scaling law to a results CSV", "law")
    for name, form in (("chinchilla", "E + A/N^alpha + B/D^beta"),
                       ("kaplan", "((Nc/N)^(alpha_N/alpha_D) + Dc/D)^alpha_D, no irreducible loss (tiny ladders)")):
        p = laws.add_parser(name, help=f"L(N, D) = {form}")
        _common_fit_args(p)
        p.add_argument("--n", required=True, help="parameter-count column")
        group = p.add_mutually_exclusive_group(required=True)
        group.add_argument("--d", help="training-tokens column")
        group.add_argument("--flops", help="training-FLOPs column (D = C / 6N)")
        p.add_argument("--budgets", type=floats_arg, default=BUDGETS, help="FLOP budgets for the compute-optimal table")
    p = laws.add_parser("data-constrained", help="Chinchilla with decaying value of repeated data and excess params")
    _common_fit_args(p)
    for flag, what in (("--n", "parameter-count"), ("--d", "training-tokens"), ("--unique", "unique-tokens")):
        p.add_argument(flag, required=True, help=f"{what} column")
    p.add_argument("--base-law", metavar="JSON",
                   help="chinchilla fit to hold fixed (default: fit it on rows with D <= U)")
    p.add_argument("--base", dest="base_law", help=argparse.SUPPRESS)  # the old spelling (fit cmr's --base is a column)
    for name, (flag, var) in ONE_D.items():
        p = laws.add_parser(name, help=f"L({var}) = E + coef/{var}^exponent")
        _common_fit_args(p)
        p.add_argument(f"--{flag}", required=True, help=f"{var} column")
        p.add_argument("--at", type=size_arg, action="append", default=[], help=f"predict at this {var} (repeatable)")

    what = add_group(sub, "predict", "predict from a fitted law", "what")
    p = what.add_parser("loss", help="the law's prediction (with bootstrap and calibrated intervals and a verdict)")
    p.add_argument("--law", required=True, metavar="JSON", help="a law written by `ladderlab fit ... --json`")
    p.add_argument("--at", type=point_arg, action="append", required=True, metavar="N=7e9,D=1.4e12",
                   help="the law's inputs to predict at (repeatable); counts may be size labels, N=7B,D=1.4T. "
                        f"A point past k = {_k():.3g}x the largest fitted N or D is flagged not predictable "
                        "(k: the farthest ratio `ladderlab backtest` covers)")
    p.add_argument("--json", metavar="OUT", help="write the predictions as JSON")
    p = what.add_parser("tasks", help="benchmark accuracy of a target model from a ladder's runs (two-step task laws)")
    p.add_argument("--runs", "--csv", dest="runs", required=True, metavar="RUNS",
                   help="a folder of run CSVs (--format olmo) or a runs table (--format table)")
    p.add_argument("--format", choices=("olmo", "table"), default="olmo", help="olmo: one SIZE-KxC.csv per run")
    p.add_argument("--n-table", metavar="FILE", help="size -> N as JSON or CSV (size,N); the OLMo ladder's is built in")
    p.add_argument("--sizes", type=names_arg, help="fit on these sizes, e.g. 190M,370M,760M,1B (default: all)")
    p.add_argument("--multiples", type=floats_arg,
                   help="fit on these token multiples (xC), e.g. 1,2,5,10 (default: all)")
    p.add_argument("--mixture", help="--format table: only runs of this mixture (a ladder's main one, e.g. equal)")
    p.add_argument("--last", type=int, default=5, help="step 1: mean of each run's last LAST checkpoints")
    p.add_argument("--window", type=int, default=5, help="step 2: trailing mean over WINDOW checkpoints")
    p.add_argument("--method", choices=("default", "loss-to-loss", "paper", "auto"), default="default",
                   help="step 1: loss-to-loss (general loss law mapped to task loss), paper (task loss law), auto "
                        "(per task by backtest), default (loss-to-loss where the runs log --general, else paper)")
    p.add_argument("--general", default="val/pile", metavar="COLUMN",
                   help="the general validation loss column that loss-to-loss maps from")
    p.add_argument("--target", action="append", required=True, metavar="NAME:N:D",
                   help="model to predict; N a number, a size in the N table or a label like 7B, D tokens or KxC "
                        "(repeatable), e.g. 3B-5xC:3B:5xC")
    p.add_argument("--tasks", type=names_arg, help="tasks to predict (default: the 8 main tasks, or all in the table)")
    p.add_argument("--bootstrap", type=int, default=1000, metavar="B", help="bootstrap refits per step")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("--level", type=float, default=0.9, help="interval level")
    p.add_argument("--max-width", type=float, default=0.1,
                   help="flag a task as not predictable when its accuracy interval is wider than this (fraction)")
    p.add_argument("--workers", type=int, default=None, help="processes, one task each (default: all cores)")
    p.add_argument("--json", metavar="OUT", help="{target: {task: {loss, acc, acc_lo, acc_hi, ...}}}")
    p.add_argument("--plot", metavar="DIR", help="write the step-1 and step-2 fits of each task as DIR/<task>.png")
    return laws, what


def _k() -> float:
    """The backtests' k, for --help."""
    from ladderlab.scaling.backtest.calibration import bundled_calibration

    return bundled_calibration().k


def _load_table(args: argparse.Namespace, columns: Sequence[str]) -> dict[str, Any]:
    import numpy as np

    from ladderlab.scaling.tables.columns import read_filtered

    cols = read_filtered(args.csv, [*columns, args.loss], args.where)
    if args.drop_highest:
        keep = np.argsort(cols[args.loss])[: max(len(cols[args.loss]) - args.drop_highest, 0)]
        cols = {k: v[np.sort(keep)] for k, v in cols.items()}
    return cols


def _fit(args: argparse.Namespace, law: str, x: dict[str, Any], y: Any, **kwargs: Any) -> Any:
    """Fits LAW with the command's bootstrap options."""
    from ladderlab.scaling.api import fit

    return fit(law, x, y, bootstrap=args.bootstrap, seed=args.seed, workers=args.workers, **kwargs)


def _fit_info(fitted: Any, method: str | None, x: dict[str, Any], y: Any) -> dict[str, Any]:
    """The fit range and the fit's own scale (refit without the largest N; METHOD None: no scale)."""
    from ladderlab.scaling import report
    from ladderlab.scaling.backtest.harness import self_check_scale

    return report.fit_info(x, None if method is None else self_check_scale(method, x, y, fitted))


def _write_fit(args: argparse.Namespace, fitted: Any, x: dict[str, Any], y: Any, extra: dict[str, Any]) -> None:
    """The --json and --plot outputs every `fit` law shares."""
    write_json(args.json, {**fitted.to_json(), **extra})
    if args.plot:
        from ladderlab.scaling.plot import plot_fit

        plot_fit(fitted, x, y, args.plot)


def fit_n_d(args: argparse.Namespace) -> None:
    """`fit chinchilla` / `fit kaplan`: the law, then the compute-optimal allocation at each budget."""
    from ladderlab.console import make_console, rows_table
    from ladderlab.scaling import report

    console = make_console()
    cols = _load_table(args, [args.n, args.d or args.flops])
    n = cols[args.n]
    d = cols[args.d] if args.d else cols[args.flops] / (6.0 * n)
    x, y = {"N": n, "D": d}, cols[args.loss]
    fitted = _fit(args, args.law, x, y)
    report.print_fit(fitted, f"{args.law.capitalize()} law fitted to {args.csv}", console)
    info = _fit_info(fitted, args.law, x, y)
    rows = report.compute_optimal_rows(fitted, args.budgets, info)
    columns = ["flops", "N", "D", "tokens_per_param", "loss", "gain_vs_20tpp_pct",
               *(["significant"] if fitted.boot_BxP is not None else []), "verdict"]
    console.print(rows_table(rows, "compute-optimal allocation", columns))
    warnings = report.compute_optimal_warnings(rows)
    for w in warnings:
        console.print(f"[yellow]warning:[/yellow] {w}")
    _write_fit(args, fitted, x, y, {"compute_optimal": rows, "compute_optimal_warnings": warnings, "backtest": info})


def fit_data_constrained(args: argparse.Namespace) -> None:
    """`fit data-constrained`: a Chinchilla base (given, or fitted on single-epoch rows) held fixed."""
    from ladderlab.console import make_console
    from ladderlab.scaling import report
    from ladderlab.scaling.api import fit, load_fitted

    console = make_console()
    cols = _load_table(args, [args.n, args.d, args.unique])
    x, y = {"N": cols[args.n], "D": cols[args.d], "U": cols[args.unique]}, cols[args.loss]
    if args.base_law:
        base = load_fitted(args.base_law)
        if base.law.name != "chinchilla":
            raise LadderlabError(f"{args.base_law}: --base-law must be a chinchilla fit, not {base.law.name}")
    else:
        single = x["D"] <= x["U"]
        base = fit("chinchilla", {"N": x["N"][single], "D": x["D"][single]}, y[single])
        report.print_fit(base, f"base Chinchilla law on the {int(single.sum())} single-epoch rows", console)
    fitted = _fit(args, "data-constrained", x, y, fixed=base.params)
    fitted.warnings.extend(f"base fit: {w}" for w in base.warnings)
    report.print_fit(fitted, f"data-constrained law fitted to {args.csv} (base held fixed)", console)
    # the scale refits the base too, so a given --base-law has none
    _write_fit(args, fitted, x, y, {"backtest": _fit_info(fitted, None if args.base_law else "data-constrained", x, y)})


def fit_one_d(args: argparse.Namespace) -> None:
    """`fit step / size / compute`: a one-input power law, with predictions at each --at."""
    from ladderlab.console import make_console, rows_table
    from ladderlab.scaling import report

    console = make_console()
    flag, var = ONE_D[args.law]
    cols = _load_table(args, [getattr(args, flag)])
    x, y = {var: cols[getattr(args, flag)]}, cols[args.loss]
    fitted = _fit(args, args.law, x, y)
    report.print_fit(fitted, f"{args.law} law fitted to {args.csv}", console)
    extra: dict[str, Any] = {"backtest": report.fit_info(x, None)}
    if args.at:
        rows = report.predictions_rows(fitted, [{var: v} for v in args.at], extra["backtest"])
        console.print(rows_table(rows, "predictions", [var, "prediction", "past_fitted", "verdict"]))
        extra["predictions"] = rows
    _write_fit(args, fitted, x, y, extra)


def predict_loss(args: argparse.Namespace) -> None:
    """`predict loss`: a fitted law's predictions, with intervals, at each --at."""
    from ladderlab.console import make_console, rows_table
    from ladderlab.scaling import report
    from ladderlab.scaling.api import load_fitted
    from ladderlab.scaling.tables.columns import read_json

    fitted = load_fitted(args.law)
    info = read_json(args.law, "ladderlab law", lambda doc: doc.get("backtest"))
    for point in args.at:
        unknown = set(point) - set(fitted.law.inputs)
        if unknown or len(point) != len(fitted.law.inputs):
            raise LadderlabError(f"--at {point}: the {fitted.law.name} law takes {', '.join(fitted.law.inputs)}")
    rows = report.predictions_rows(fitted, args.at, info)
    console = make_console()
    extra = ["past_fitted", "calibrated_lo", "calibrated_hi", "verdict"] if info else []
    console.print(rows_table(rows, f"{fitted.law.name} predictions", [*fitted.law.inputs, "prediction",
                                                                      *[c for c in extra if c in rows[0]]]))
    if info is None:
        console.print(f"[yellow]warning:[/yellow] {args.law} has no fit range (written before backtests): no "
                      "calibrated interval or verdict; refit to get them")
    write_json(args.json, {"law": fitted.law.name, "predictions": rows})


def predict_tasks(args: argparse.Namespace) -> None:
    """`predict tasks`: two-step task laws (loss, then accuracy) fitted on a ladder, predicted at each --target."""
    from ladderlab.console import make_console
    from ladderlab.paths import as_path
    from ladderlab.scaling.tables.olmo import MAIN_TASKS, OLMO_N, read_n_table, read_olmo_ladder
    from ladderlab.scaling.tasks import laws as tasks
    from ladderlab.scaling.tasks import report as task_report
    from ladderlab.scaling.tasks.plot import plot_task
    from ladderlab.scaling.tables.runs import read_runs, select_ladder

    n_table = {**OLMO_N, **(read_n_table(args.n_table) if args.n_table else {})}
    targets = [task_report.parse_target(t, n_table) for t in args.target]
    if args.format == "olmo":
        everything = read_olmo_ladder(args.runs, n_table)
        runs = read_olmo_ladder(args.runs, n_table, args.sizes, args.multiples)
        default_tasks = MAIN_TASKS
    else:
        everything = select_ladder(read_runs(args.runs), None, None, args.mixture)
        runs = select_ladder(everything, args.sizes, args.multiples)
        default_tasks = tuple(everything.tasks)
    names = args.tasks or [t for t in default_tasks if t in runs.tasks]
    for t in names:
        runs.require_task(t)
    console = make_console()
    laws = tasks.fit(runs, names, args.bootstrap, args.seed, args.max_width, args.workers, last=args.last,
                     window=args.window, method=args.method, general=args.general)
    for table in task_report.laws_tables(laws):
        console.print(table)
    for task, law in laws.laws.items():
        for w in [*law.step1.warnings, *law.step2.warnings]:
            console.print(f"[yellow]warning:[/yellow] {task}: {w}")
    doc = task_report.predictions(laws, targets, everything, args.level, args.last)
    for t in targets:
        console.print(task_report.prediction_table(t, doc[t.name], args.level))
    for task, e in task_report.error_summary(doc).items():
        console.print(f"{task}: mean |error| step-1 loss {e['step1_loss_err_pct']:.2f}%, chained accuracy "
                      f"{e['chain_acc_err_pts']:.2f} pts, single-step {e['single_acc_err_pts']:.2f} pts")
    write_json(args.json, doc)
    if args.plot:
        plots = as_path(args.plot)  # a local folder or an object-store URL (each plot uploaded whole)
        plots.mkdir(parents=True, exist_ok=True)
        for task, law in laws.laws.items():
            p1, p2 = tasks.step1_points(runs, task, args.last), tasks.step2_points(runs, task, window=args.window)
            plot_task(law, p1, p2, targets, plots / f"{task}.png")
