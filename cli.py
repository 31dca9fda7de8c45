"""The `ladderlab` command: fit and predict laws, optimise mixtures, build data, train models and ladders, plan growth.

This module builds the top-level parser and dispatches each (command, subcommand) to its handler through HANDLERS;
the cli_*.py modules add each command group's parsers and hold its handlers (shared argparse pieces: cli_args.py).
Bad usage or bad input prints one line naming what is wrong and exits with code 2.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import sys
from typing import Callable, Sequence

from ladderlab import cli_ablate, cli_backtest, cli_fit, cli_grow, cli_ladder, cli_mixing, cli_schedule, cli_train
from ladderlab.cli_args import Parser
from ladderlab.errors import LadderlabError

# The namespace field holding each command group's subcommand (the dest its add_group gave it).
SUBCOMMAND = {"fit": "law", "predict": "what", "optimize": "what", "data": "data_command", "ladder": "ladder_command",
              "grow": "grow_command"}
HANDLERS: dict[tuple[str, str | None], Callable[[argparse.Namespace], None]] = {
    **{("fit", law): cli_fit.fit_one_d for law in cli_fit.ONE_D},
    ("fit", "chinchilla"): cli_fit.fit_n_d,
    ("fit", "kaplan"): cli_fit.fit_n_d,
    ("fit", "data-constrained"): cli_fit.fit_data_constrained,
    ("fit", "mixing-law"): cli_mixing.fit_mixing_law,
    ("fit", "mixture-scaling"): cli_mixing.fit_mixture_scaling,
    ("fit", "cmr"): cli_mixing.fit_cmr,
    ("fit", "annealing"): cli_schedule.fit_annealing,
    ("fit", "cpt"): cli_schedule.fit_cpt,
    ("predict", "curve"): cli_schedule.predict_curve,
    ("predict", "cpt-loss"): cli_schedule.predict_cpt_loss,
    ("predict", "loss"): cli_fit.predict_loss,
    ("predict", "tasks"): cli_fit.predict_tasks,
    ("predict", "mixture-loss"): cli_mixing.predict_mixture_loss,
    ("optimize", "mixture"): cli_mixing.optimize_mixture,
    ("demo", None): cli_train.demo,
    ("train", None): cli_train.train,
    ("data", "build-corpus"): cli_train.build_corpus,
    ("data", "train-tokenizer"): cli_train.train_tokenizer,
    ("data", "inspect"): cli_train.inspect_data,
    ("ladder", "plan"): cli_ladder.plan,
    ("ladder", "run"): cli_ladder.run,
    ("ladder", "status"): cli_ladder.status,
    ("report", None): cli_ladder.report,
    ("grow", "plan"): cli_grow.plan,
    ("grow", "compare"): cli_grow.compare,
    ("grow", "speedup"): cli_grow.speedup,
    ("grow", "refit"): cli_grow.refit,
    ("backtest", None): cli_backtest.backtest,
    ("ablate", None): cli_ablate.ablate,
}


def build_parser() -> Parser:
    """The whole `ladderlab` parser; commands are listed in --help in the order added here."""
    parser = Parser(prog="ladderlab", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {importlib.metadata.version('ladderlab')}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    laws, what = cli_fit.add_parsers(sub)  # fit, predict
    cli_train.add_parsers(sub)  # demo, train, data
    cli_mixing.add_parsers(sub, laws, what)  # fit mixing-law / mixture-scaling / cmr, predict mixture-loss, optimize
    cli_schedule.add_parsers(laws, what)  # fit annealing / cpt, predict curve / cpt-loss
    cli_ladder.add_parsers(sub)  # ladder, report
    cli_grow.add_parsers(sub)  # grow
    cli_backtest.add_parsers(sub)  # backtest
    cli_ablate.add_parsers(sub)  # ablate
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs `ladderlab ARGV`; returns the exit code (2 for bad input, which prints one line)."""
    args = build_parser().parse_args(argv)
    subcommand = getattr(args, SUBCOMMAND[args.command]) if args.command in SUBCOMMAND else None
    try:
        if getattr(args, "config_required", False) and args.config is None:
            raise LadderlabError("a config file is required: give CONFIG or --config CONFIG")
        HANDLERS[args.command, subcommand](args)
    except LadderlabError as e:
        print(f"ladderlab {args.command}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
