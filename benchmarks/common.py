"""What every benchmark script shares: the --smoke and --json flags, the JSON output, and the optional peer."""

from __future__ import annotations

import argparse
import importlib
import json
import os
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

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


def make_batch(batch: int, seq: int, vocab: int, seed: int = 0) -> dict[str, np.ndarray]:
    """A train batch of random tokens, two packed documents per row (so every attention path sees segments)."""
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, vocab, (batch, seq + 1)).astype(np.int32)
    segments = np.where(np.arange(seq) < seq // 2, 1, 2).astype(np.int32)[None].repeat(batch, 0)
    positions = np.where(segments == 1, np.arange(seq), np.arange(seq) - seq // 2).astype(np.int32)
    return {"inputs": tokens[:, :-1], "targets": tokens[:, 1:], "segment_ids": segments, "positions": positions,
            "mask": np.ones((batch, seq), np.float32)}
