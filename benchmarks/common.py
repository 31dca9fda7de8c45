"""What every benchmark script shares: the --smoke and --json flags, the JSON output, and the optional peer."""

from __future__ import annotations

import argparse
import importlib
import json
import os
from pathlib import Path
from types import ModuleType
from typing import Any

NO_PEERS = "BENCH_NO_PEERS"  # set (non-empty): every peer counts as not installed, to test the skipped path


def parse(parser: argparse.ArgumentParser, smoke: dict[str, Any]) -> argparse.Namespace:
    """Add --smoke and --json OUT, then parse; --smoke makes `smoke` the defaults (flags given still win)."""
    parser.add_argument("--smoke", action="store_true",
                        help="tiny sizes on tests/fixtures or generated data: seconds, only checks that it runs")
    parser.add_argument("--json", metavar="OUT", help="also write the JSON result here")
    args = parser.parse_args()
    if args.smoke:
        parser.set_defaults(**smoke)
        args = parser.parse_args()
    return args


def emit(doc: dict[str, Any], out: str | None) -> None:
    """Print the result as JSON, and write it to `out` when given."""
    text = json.dumps(doc, indent=2)
    print(text)
    if out:
        Path(out).write_text(text + "\n")


def peer(name: str) -> tuple[ModuleType | None, str]:
    """(module, "name version") of the peer a benchmark measures against, or (None, "skipped") if not importable."""
    if os.environ.get(NO_PEERS):
        return None, "skipped"
    try:
        module = importlib.import_module(name)
    except ImportError:
        return None, "skipped"
    return module, f"{name} {module.__version__}"
