"""The `ladderlab` command: fit laws to result tables, predict from fitted laws, run the demo.

Bad usage or bad input prints one line naming what is wrong and exits with code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Sequence

from ladderlab.errors import LadderlabError

BUDGETS = (1e20, 1e21, 1e22, 1e23, 1e24)
ONE_D = {"step": ("steps", "S"), "size": ("n", "N"), "compute": ("flops", "C")}


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _point(text: str) -> dict[str, float]:
    try:
        return {k.strip(): float(v) for k, v in (kv.split("=") for kv in text.split(","))}
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE[,NAME=VALUE], got {text!r}") from None


def _common_fit_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--csv", required=True, help="results table, one row per run")
    p.add_argument("--loss", required=True, help="loss column")
    p.add_argument("--where", action="append", default=[], metavar="COL<op>VALUE",
                   help="keep rows where COL = TEXT, != TEXT, or <, <=, >, >= NUMBER (repeatable)")
    p.add_argument("--drop-highest", type=int, default=0, metavar="K", help="drop the K highest-loss rows")
    p.add_argument("--bootstrap", type=int, default=200, metavar="B", help="bootstrap refits over runs (0: none)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("--workers", type=int, default=None, help="bootstrap processes (default: all cores)")
    p.add_argument("--json", metavar="OUT", help="write the fitted law as JSON")
    p.add_argument("--plot", metavar="OUT.png", help="plot data, fit and extrapolation")


def build_parser() -> Parser:
    parser = Parser(prog="ladderlab", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    fit = sub.add_parser("fit", help="fit a scaling law to a results CSV")
    laws = fit.add_subparsers(dest="law", required=True, parser_class=Parser)
    p = laws.add_parser("chinchilla", help="L(N, D) = E + A/N^alpha + B/D^beta")
    _common_fit_args(p)
    p.add_argument("--n", required=True, help="parameter-count column")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--d", help="training-tokens column")
    group.add_argument("--flops", help="training-FLOPs column (D = C / 6N)")
    p.add_argument("--budgets", type=_floats, default=BUDGETS, help="FLOP budgets for the compute-optimal table")
    p = laws.add_parser("data-constrained", help="Chinchilla with decaying value of repeated data and excess params")
    _common_fit_args(p)
    for flag, what in (("--n", "parameter-count"), ("--d", "training-tokens"), ("--unique", "unique-tokens")):
        p.add_argument(flag, required=True, help=f"{what} column")
    p.add_argument("--base", metavar="JSON", help="chinchilla fit to hold fixed (default: fit it on rows with D <= U)")
    for name, (flag, var) in ONE_D.items():
        p = laws.add_parser(name, help=f"L({var}) = E + coef/{var}^exponent")
        _common_fit_args(p)
        p.add_argument(f"--{flag}", required=True, help=f"{var} column")
        p.add_argument("--at", type=float, action="append", default=[], help=f"predict at this {var} (repeatable)")

    predict = sub.add_parser("predict", help="predict from a fitted law")
    what = predict.add_subparsers(dest="what", required=True, parser_class=Parser)
    p = what.add_parser("loss", help="the law's prediction (with interval) at given inputs")
    p.add_argument("--law", required=True, metavar="JSON", help="a law written by `ladderlab fit ... --json`")
    p.add_argument("--at", type=_point, action="append", required=True, metavar="N=7e9,D=1.4e12")
    p.add_argument("--json", metavar="OUT")

    demo = sub.add_parser("demo", help="fit laws on bundled real runs and print the report")
    demo.add_argument("--config", help="a .gin or .py file configuring DemoConfig")
    demo.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config field")
    demo.add_argument("--json", metavar="OUT", help="write the demo's results as JSON")
    return parser


def _write_json(path: str | None, doc: dict[str, Any]) -> None:
    if path:
        with open(path, "w") as f:
            json.dump(doc, f, indent=2)


def _load_table(args: argparse.Namespace, columns: Sequence[str]) -> dict[str, Any]:
    import numpy as np

    from ladderlab.scaling.table import read_filtered

    cols = read_filtered(args.csv, [*columns, args.loss], args.where)
    if args.drop_highest:
        keep = np.argsort(cols[args.loss])[: max(len(cols[args.loss]) - args.drop_highest, 0)]
        cols = {k: v[np.sort(keep)] for k, v in cols.items()}
    return cols


def cmd_fit(args: argparse.Namespace) -> None:
    from ladderlab.scaling import report
    from ladderlab.scaling.api import fit, load_fitted
    from ladderlab.scaling.plot import plot_fit

    console = report.make_console()
    opts = dict(bootstrap=args.bootstrap, seed=args.seed, workers=args.workers)
    extra: dict[str, Any] = {}
    if args.law == "chinchilla":
        cols = _load_table(args, [args.n, args.d or args.flops])
        n = cols[args.n]
        d = cols[args.d] if args.d else cols[args.flops] / (6.0 * n)
        x, y = {"N": n, "D": d}, cols[args.loss]
        fitted = fit("chinchilla", x, y, **opts)
        report.print_fit(fitted, f"Chinchilla law fitted to {args.csv}", console)
        rows = report.compute_optimal_rows(fitted, args.budgets)
        console.print(report.rows_table(rows, "compute-optimal allocation", ["flops", "N", "D", "tokens_per_param", "loss"]))
        extra["compute_optimal"] = rows
    elif args.law == "data-constrained":
        cols = _load_table(args, [args.n, args.d, args.unique])
        x, y = {"N": cols[args.n], "D": cols[args.d], "U": cols[args.unique]}, cols[args.loss]
        if args.base:
            base = load_fitted(args.base)
            if base.law.name != "chinchilla":
                raise LadderlabError(f"{args.base}: --base must be a chinchilla fit, not {base.law.name}")
        else:
            single = x["D"] <= x["U"]
            base = fit("chinchilla", {"N": x["N"][single], "D": x["D"][single]}, y[single])
            report.print_fit(base, f"base Chinchilla law on the {int(single.sum())} single-epoch rows", console)
        fitted = fit("data-constrained", x, y, fixed=base.params, **opts)
        fitted.warnings.extend(f"base fit: {w}" for w in base.warnings)
        report.print_fit(fitted, f"data-constrained law fitted to {args.csv} (base held fixed)", console)
    else:
        flag, var = ONE_D[args.law]
        cols = _load_table(args, [getattr(args, flag)])
        x, y = {var: cols[getattr(args, flag)]}, cols[args.loss]
        fitted = fit(args.law, x, y, **opts)
        report.print_fit(fitted, f"{args.law} law fitted to {args.csv}", console)
        if args.at:
            rows = report.predictions_rows(fitted, [{var: v} for v in args.at])
            console.print(report.rows_table(rows, "predictions", [var, "prediction"]))
            extra["predictions"] = rows
    _write_json(args.json, {**fitted.to_json(), **extra})
    if args.plot:
        plot_fit(fitted, x, y, args.plot)


def cmd_predict(args: argparse.Namespace) -> None:
    from ladderlab.scaling import report
    from ladderlab.scaling.api import load_fitted

    fitted = load_fitted(args.law)
    for point in args.at:
        unknown = set(point) - set(fitted.law.inputs)
        if unknown or len(point) != len(fitted.law.inputs):
            raise LadderlabError(f"--at {point}: the {fitted.law.name} law takes {', '.join(fitted.law.inputs)}")
    rows = report.predictions_rows(fitted, args.at)
    report.make_console().print(report.rows_table(rows, f"{fitted.law.name} predictions", [*fitted.law.inputs, "prediction"]))
    _write_json(args.json, {"law": fitted.law.name, "predictions": rows})


def cmd_demo(args: argparse.Namespace) -> None:
    from ladderlab.config import load_config
    from ladderlab.demo import DemoConfig, run_demo

    doc = run_demo(load_config(DemoConfig, args.config, args.set))
    _write_json(args.json, doc)


COMMANDS = {"fit": cmd_fit, "predict": cmd_predict, "demo": cmd_demo}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        COMMANDS[args.command](args)
    except LadderlabError as e:
        print(f"ladderlab {args.command}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
