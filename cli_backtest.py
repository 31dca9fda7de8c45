"""`ladderlab backtest`: fit small, predict large on real result sets; errors and 90% coverage per law, today's
bootstrap intervals against calibrated ones."""

from __future__ import annotations

import argparse
from typing import Any

from ladderlab.cli_args import names_arg, write_json
from ladderlab.errors import LadderlabError


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("backtest", help="fit small, predict large on real result sets: error and 90%% coverage per law",
                       description=__doc__)
    p.add_argument("--anchors", metavar="DIR", help="a folder of real result sets (shared/anchors layout): adds the "
                                                    "OLMo ladder, full copies replace the bundled excerpts")
    p.add_argument("--sets", type=names_arg,
                   help="only these sets (overtraining, datablations, mixture-ladder; with --anchors olmo-ladder, "
                        "olmo-wsd-ladder, olmo-wsd-annealing, regmix-folds; csv)")
    p.add_argument("--csv", "--runs", dest="csv", metavar="CSV", help="your runs table: fit on all sizes but the "
                                                                      "largest (at least 4 sizes), predict the largest")
    p.add_argument("--n", help="--csv: parameter-count column (the size runs are split on)")
    p.add_argument("--d", help="--csv: training-tokens column")
    p.add_argument("--loss", help="--csv: loss column (with --shares: comma-separated loss columns)")
    p.add_argument("--shares", type=names_arg, metavar="COL,COL",
                   help="--csv: a mixture table (one row per checkpoint, these share columns): the joint law, nested "
                        "pipeline and chosen form, fitted on all sizes but the largest (at least 5 sizes)")
    p.add_argument("--run", help="--csv --shares: run-id column (default: same shares and N = one run)")
    p.add_argument("--where", action="append", default=[], metavar="COL<op>VALUE", help="--csv: keep these rows")
    p.add_argument("--bootstrap", type=int, default=100, metavar="B",
                   help="bootstrap replicates for today's intervals on the reported splits (warm-started)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    p.add_argument("--json", metavar="OUT", help="{set: {law_or_method: {mape, coverage_90, width_90_pct, n_targets"
                                                 "[, spearman, separated, stages, ...]}}}")
    p.add_argument("--write-calibration", metavar="CSV",
                   help="write the residual pool the calibration derives from (scaling/bundled/"
                        "calibration_residuals.csv is the shipped one, written after a run of every ladder set "
                        "with --anchors)")


def backtest(args: argparse.Namespace) -> None:
    """Runs the backtests, prints one row per (set, method) and writes the JSON."""
    from pathlib import Path

    from ladderlab.console import make_console, rows_table
    from ladderlab.scaling.backtest import sets as backtest_sets
    from ladderlab.scaling.backtest.calibration import calibrate, read_residuals
    from ladderlab.scaling.backtest.harness import backtest as run

    found = backtest_sets.bundled_sets()
    if args.anchors:
        found.update(backtest_sets.anchor_sets(Path(args.anchors)))
    if args.csv:
        missing = [f for f in ("n", "d", "loss") if getattr(args, f) is None]
        if missing:
            raise LadderlabError(f"--csv {args.csv}: needs {', '.join('--' + m for m in missing)}")
        if args.shares:
            if args.where:
                raise LadderlabError(f"--csv {args.csv}: --where does not apply with --shares")
            found["csv"] = backtest_sets.mixture_table(args.csv, args.shares, args.n, args.d, names_arg(args.loss),
                                                       args.run)
        else:
            found["csv"] = backtest_sets.user_table(args.csv, args.n, args.d, args.loss, args.where)
    if args.sets:
        unknown = [s for s in args.sets if s not in found]
        if unknown:
            raise LadderlabError(f"--sets: unknown set(s) {', '.join(unknown)} (have: {', '.join(found)})")
        found = {k: v for k, v in found.items() if k in args.sets}
    doc, pool, _ = run(found, read_residuals(), args.bootstrap, args.seed, workers=args.workers)
    rows = [{"set": s, "method": m, **v} for s, methods in doc.items() for m, v in methods.items()]
    console = make_console()
    console.print(rows_table(rows, "backtest: fit small, predict large (coverage of 90% intervals; .../calibrated: "
                                   "calibrated without the set scored)",
                             ["set", "method", "mape", "coverage_90", "width_90_pct", "n_targets", "spearman",
                              "separated"]))
    for row in rows:
        mixed = [c for c, v in row.get("columns", {}).items() if v.get("separated") is False]
        if mixed:
            console.print(f"{row['set']} {row['method']}: mixtures no longer separated (their order flips in the "
                          f"draws) in {len(mixed)} of {len(row['columns'])} loss columns: {', '.join(mixed)}")
    console.print(f"k = {calibrate(pool).k:.3g}: predictions past k x the largest fitted N or D are flagged")
    write_json(args.json, doc)
    if args.write_calibration:
        pool.write(args.write_calibration)
