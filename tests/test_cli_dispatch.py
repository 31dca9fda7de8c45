"""The dispatch table in cli.py and the parsers the cli_*.py modules add name the same commands."""

import argparse

from ladderlab.cli import HANDLERS, SUBCOMMAND, build_parser


def _subparsers(parser: argparse.ArgumentParser) -> argparse._SubParsersAction | None:
    return next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)


def test_every_command_has_one_handler_and_its_subcommand_field():
    leaves, dests = set(), {}
    for command, parser in _subparsers(build_parser()).choices.items():
        group = _subparsers(parser)
        if group is None:
            leaves.add((command, None))
        else:
            dests[command] = group.dest
            leaves |= {(command, name) for name in group.choices}
    assert leaves == set(HANDLERS)
    assert dests == SUBCOMMAND
    assert len(leaves) == 32  # fit 11, predict 5, optimize 1, data 3, ladder 3, grow 4; demo, train, report, backtest, ablate
