"""`ladderlab grow plan / compare / speedup / refit`: model growth timing, operator comparison, the speed-up table of
a comparison's runs, and the timing law's refit."""

from __future__ import annotations

import argparse
from typing import Any

from ladderlab.cli_args import add_config, add_group, add_set, size_arg, write_json


def add_parsers(sub: Any) -> None:
    """Adds `grow` with its subcommands."""
    steps = add_group(sub, "grow", "model growth (G_stack and other operators): plan a growth run, compare operators",
                      "grow_command")
    p = steps.add_parser("plan", help="growth timing d and factor g for a target size and FLOPs budget (Du et al. 2024)")
    p.add_argument("--target-params", type=size_arg, required=True, metavar="N",
                   help="the grown model's parameters, e.g. 7e9 or 7B")
    p.add_argument("--budget-flops", type=float, required=True, metavar="C", help="total training FLOPs of both phases")
    p.add_argument("--factor", type=int, default=4, metavar="G", help="growth factor g (4 is the paper's advice)")
    p.add_argument("--json", metavar="OUT", help="write growth_tokens, growth_factor, small_params, large_tokens")
    p = steps.add_parser("compare", help="train a target from scratch and grown by each operator; speed-up table")
    add_config(p, "a .gin or .py file configuring GrowConfig (see configs/growth_compare.gin)", required=True)
    p.add_argument("--out", required=True, metavar="DIR", help="results folder (finished runs are reused)")
    add_set(p)
    p.add_argument("--json", metavar="OUT", help="write the table rows and {run: {speedup, lo, hi, significant}}")
    p = steps.add_parser("speedup", help="the speed-up table of a growth_runs.csv (as `grow compare` writes it)")
    p.add_argument("--csv", required=True, metavar="CSV",
                   help="run, step, flops, loss (and seed, if several) per eval point; step 0 = moment of growth")
    p.add_argument("--json", metavar="OUT", help="write {run: {speedup, lo, hi, significant}} (fractions)")
    p = steps.add_parser("refit", help="refit the timing law log10 d = a log10 N + b / log10 C + c from IsoFLOP sweeps")
    p.add_argument("--csv", "--runs", dest="csv", required=True, metavar="CSV",
                   help="one row per growth run: target params, budget FLOPs, d, final loss")
    for flag, what in (("--n", "target-parameter"), ("--flops", "budget-FLOPs"), ("--d", "growth-tokens"),
                       ("--loss", "loss")):
        p.add_argument(flag, required=True, help=f"{what} column")
    p.add_argument("--json", metavar="OUT", help="write a, b, c and each sweep's best d")


def plan(args: argparse.Namespace) -> None:
    """`grow plan`: when (d tokens) and by how much (g) to grow for a target size and budget."""
    from ladderlab.console import make_console, rows_table
    from ladderlab.scaling.growth.law import plan_growth

    growth = plan_growth(args.target_params, args.budget_flops, args.factor)
    make_console().print(rows_table([{"target N": growth.target_params, "budget C": growth.budget_flops,
                                      "g": growth.growth_factor, "small N": growth.small_params,
                                      "d (tokens)": growth.growth_tokens, "D after growth": growth.large_tokens}],
                                    "growth plan: train N/g for d tokens, stack g times, train D more"))
    write_json(args.json, growth.to_json())


def compare(args: argparse.Namespace) -> None:
    """`grow compare`: a target trained from scratch and grown by each operator; speed-up at equal loss."""
    from ladderlab.config import load_config
    from ladderlab.console import make_console, rows_table
    from ladderlab.ladders.variants.grow import GrowConfig
    from ladderlab.ladders.variants.grow_compare import compare as compare_growth

    console = make_console()
    doc = compare_growth(load_config(GrowConfig, args.config, args.set), args.out, console=console)
    shown = [{"run": r["run"], "g": r["g"], "params x": r["param_ratio"], "d": r["d"], "seeds": r["seeds"],
              "final loss": r["final_loss"], "FLOPs": r["flops"], **_speedup_cells(r, r["run"] == "scratch")}
             for r in doc["rows"]]
    console.print(rows_table(shown, f"{args.out}: speed-up at equal loss = FLOPs_scratch / FLOPs_grown - 1 "
                                    f"[95% interval]", [k for k in shown[-1] if not k.endswith(("_lo", "_hi"))]))
    console.print(f"curves: {doc['plot']}")
    write_json(args.json, doc)


def speedup(args: argparse.Namespace) -> None:
    """`grow speedup`: the speed-up at equal loss, its interval and significance, per run of a growth_runs.csv."""
    from ladderlab.console import make_console, rows_table
    from ladderlab.scaling.growth.speedup import SPEEDUP_KEYS, speedups_from_csv

    table = speedups_from_csv(args.csv)
    make_console().print(rows_table([{"run": run, "seeds": r["seeds"], "equal loss": r["loss"],
                                      "FLOPs scratch": r["flops_scratch"], "FLOPs grown": r["flops_grown"],
                                      **_speedup_cells(r)} for run, r in table.items()],
                                    f"{args.csv}: speed-up at equal loss = FLOPs_scratch / FLOPs_grown - 1 "
                                    f"[95% interval]", ["run", "seeds", "equal loss", "FLOPs scratch", "FLOPs grown",
                                                        "speed-up %", "verdict"]))
    write_json(args.json, {run: {k: r[k] for k in SPEEDUP_KEYS} for run, r in table.items()})


def _speedup_cells(r: dict, baseline: bool = False) -> dict:
    """The speed-up columns `grow compare` and `grow speedup` both print: percent, [95% interval], significance."""
    if baseline:
        return {"speed-up %": "baseline", "verdict": ""}
    return {"speed-up %": 100 * r["speedup"], "speed-up %_lo": 100 * r["lo"], "speed-up %_hi": 100 * r["hi"],
            "verdict": "significant" if r["significant"] else "not significant"}


def refit(args: argparse.Namespace) -> None:
    """`grow refit`: the timing law's a, b, c from IsoFLOP sweeps of growth runs."""
    from ladderlab.console import make_console, rows_table
    from ladderlab.scaling.growth.law import fit_timing_law
    from ladderlab.scaling.tables.columns import read_columns

    console = make_console()
    cols = read_columns(args.csv, [args.n, args.flops, args.d, args.loss])
    fit = fit_timing_law(cols[args.n], cols[args.flops], cols[args.d], cols[args.loss])
    console.print(rows_table(fit["optima"], f"best growth timing per (N, C) sweep of {args.csv}"))
    console.print(f"log10(d) = {fit['a']:.4g} log10(N) + {fit['b']:.4g} / log10(C) + {fit['c']:.4g}  "
                  f"(RMSE {fit['rmse_log10_d']:.3g} in log10 d; the paper: 0.88, 163.27, -5.74)")
    write_json(args.json, fit)
