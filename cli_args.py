"""The argparse pieces all `ladderlab` command modules share: parser class, CONFIG and --set, value types, JSON out."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ladderlab.paths import write_atomic
from ladderlab.units import parse_size

SET_HELP = ("override a config field (repeatable): a dotted path, model.d_model=192, or gin's Class.field, "
            "ModelConfig.d_model=192; counts may be size labels, sizes=(3k,12k)")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """--help shows each option's default, unless it is None, False or empty or the help text already names it."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        default = action.default
        if default is None or default is False or default in ("", [], ()) or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and exit code 2, and --help shows defaults."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def add_group(sub: Any, name: str, text: str, dest: str) -> Any:
    """A command with subcommands (`ladderlab NAME SUBCOMMAND`); the chosen one is stored as DEST."""
    return sub.add_parser(name, help=text).add_subparsers(dest=dest, required=True, parser_class=Parser)


class _Config(argparse.Action):
    """Stores CONFIG, given as the positional argument or as --config; both at once must name the same file."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        if values is None:  # the optional positional, absent
            return
        if namespace.config is not None and namespace.config != values:
            parser.error(f"two configs given: {namespace.config} and {values}")
        namespace.config = values


def add_config(p: argparse.ArgumentParser, what: str, required: bool = False) -> None:
    """CONFIG as the first argument or as --config CONFIG: every command that reads a config takes both."""
    p.add_argument("config", nargs="?", action=_Config, metavar="CONFIG", help=what)
    p.add_argument("--config", dest="config", action=_Config, metavar="CONFIG", help="the same as CONFIG")
    p.set_defaults(config_required=required)


def add_set(p: argparse.ArgumentParser) -> None:
    """--set KEY=VALUE, the config overrides of every command that reads a config."""
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=SET_HELP)


def size_arg(text: str) -> float:
    """argparse type of a parameter or token count: a number or a size label (7B, 190M, 1.3B, 500K)."""
    try:
        return parse_size(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def floats_arg(text: str) -> tuple[float, ...]:
    """argparse type of comma-separated numbers, 1e20,1e21."""
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def names_arg(text: str) -> tuple[str, ...]:
    """argparse type of comma-separated names, 190M,370M."""
    return tuple(v.strip() for v in text.split(",") if v.strip())


def point_arg(text: str) -> dict[str, float]:
    """argparse type of a law's inputs, N=7B,D=1.4T."""
    try:
        return {k.strip(): parse_size(v) for k, v in (kv.split("=") for kv in text.split(","))}
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE[,NAME=VALUE] (values may be sizes like 7B), "
                                         f"got {text!r}") from None


def write_json(path: str | None, doc: dict[str, Any]) -> None:
    """Writes DOC to PATH as indented JSON, when a --json PATH was given."""
    if path:
        write_atomic(path, json.dumps(doc, indent=2))
