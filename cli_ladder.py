"""`ladderlab ladder plan / run / status` and `ladderlab report`: run a ladder of training runs and fit its laws."""

from __future__ import annotations

import argparse
from typing import Any

from ladderlab.cli_args import add_config, add_group, add_set, size_arg, write_json


def _shard(text: str) -> tuple[int, int]:
    index, sep, count = text.partition("/")
    try:
        return int(index), int(count)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected INDEX/COUNT, e.g. 0/4, got {text!r}") from None


def add_parsers(sub: Any) -> None:
    """Adds `ladder` with its subcommands, and `report`."""
    steps = add_group(sub, "ladder", "plan, run and follow a ladder of training runs", "ladder_command")
    for name, text in (("plan", "print every run: N, D, FLOPs, steps, batch, LR, estimated time"),
                       ("run", "train every unfinished run (resumes interrupted ones) and write runs.csv")):
        p = steps.add_parser(name, help=text)
        add_config(p, "a .gin or .py file configuring LadderConfig (see configs/ladder_*.gin)", required=True)
        add_set(p)
        p.add_argument("--json", metavar="OUT", help="write the plan (or the runs table rows) as JSON")
    p.add_argument("--out", required=True, metavar="DIR", help="the ladder's results folder")
    p.add_argument("--shard", type=_shard, default=(0, 1), metavar="I/K",
                   help="take runs I, I+K, I+2K, ... (one process per host group or device group)")
    p = steps.add_parser("status", help="progress of a ladder's runs")
    p.add_argument("dir", help="the ladder's results folder")
    p = sub.add_parser("report", help="fit a ladder's laws; write tables, PNG plots and a Markdown summary")
    p.add_argument("dir", help="the ladder's results folder")
    p.add_argument("--bootstrap", type=int, default=100, metavar="B", help="bootstrap refits of the scaling law")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("--target-params", "--target-n", dest="target_n", type=size_arg, default=0.0, metavar="N",
                   help="target model size for the prediction, e.g. 1e6 or 1M (default: 10x the largest run); "
                        "D = its 1xC")
    p.add_argument("--json", metavar="OUT", help="write the summary as JSON")


def _ladder_config(args: argparse.Namespace) -> Any:
    from ladderlab.config import load_config
    from ladderlab.ladders.config import LadderConfig

    return load_config(LadderConfig, args.config, args.set)


def plan(args: argparse.Namespace) -> None:
    """`ladder plan`: every run's shape, tokens, FLOPs, steps, batch, LR and estimated time."""
    from ladderlab.console import make_console, rows_table
    from ladderlab.ladders.plan import estimate_s, plan as plan_runs

    console = make_console()
    cfg = _ladder_config(args)
    runs = plan_runs(cfg)
    rows = [r.row() for r in runs]
    shown = [{"run": r["run"], "N": r["N"], "shape": f"d{r['d_model']} L{r['layers']}", "D": r["D"],
              "FLOPs": r["flops"], "steps": r["steps"], "batch": r["batch"], "lr": r["lr"], "warmup": r["warmup"],
              "est_s": r["est_s"]} for r in rows]
    console.print(rows_table(shown, f"ladder {cfg.name!r}: {len(rows)} runs, {sum(r['flops'] for r in rows):.3g} "
                                    f"FLOPs (6ND), estimated {estimate_s(runs) / 60:.1f} min on this machine"))
    write_json(args.json, {"runs": rows})


def run(args: argparse.Namespace) -> None:
    """`ladder run`: train every unfinished run of this shard, then write runs.csv of the finished ones."""
    from ladderlab.console import make_console
    from ladderlab.ladders.runner import run_ladder

    console = make_console()
    table = run_ladder(_ladder_config(args), args.out, shard=args.shard, console=console)
    if table is not None:
        console.print(f"wrote {args.out}/runs.csv: {len(table.run_ids)} runs, {len(table)} rows")
        write_json(args.json, {"rows": len(table), "runs": table.run_ids})


def status(args: argparse.Namespace) -> None:
    """`ladder status`: each run's state and progress."""
    from ladderlab.console import make_console, rows_table
    from ladderlab.ladders.runner import status_rows

    rows = status_rows(args.dir)
    done = sum(r["state"] == "finished" for r in rows)
    make_console().print(rows_table(rows, f"{args.dir}: {done}/{len(rows)} runs finished"))


def report(args: argparse.Namespace) -> None:
    """`report`: a ladder's laws, tables, plots and Markdown summary."""
    from ladderlab.ladders.report import make_report

    write_json(args.json, make_report(args.dir, bootstrap=args.bootstrap, seed=args.seed, target_n=args.target_n))
