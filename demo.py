"""`ladderlab demo`: build the demo corpus, train a small ladder on this CPU, fit its laws and print the report.

The report holds the scaling law with a held-out check (the largest run predicted from the others), the mixing law
with the best mixture for a larger target, and a check of that mixture: it is trained at the sweep's size and its
actual loss compared with the prediction and its interval, in the same report.md. `--quick` runs a smaller ladder
on text already on the machine. `--bundled` runs the earlier demo instead: laws fitted to bundled real training runs
(no training).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from ladderlab.ladders.config import LadderConfig
from ladderlab.ladders.plan import models
from ladderlab.ladders.report import inside, make_report, verdict
from ladderlab.ladders.runner import run_ladder

CONFIGS = Path(__file__).resolve().parent / "configs"


def default_config(quick: bool) -> Path:
    return CONFIGS / ("ladder_quick.gin" if quick else "ladder_demo.gin")


def run_demo(cfg: LadderConfig, out: str | Path, *, bootstrap: int = 100, seed: int = 0,
             console: Console | None = None) -> dict[str, Any]:
    """Train (or resume) the ladder in `out`, write its report, check the best mixture; return the summary."""
    from ladderlab.console import make_console

    console = console or make_console()
    start = time.perf_counter()
    if cfg.data.corpus == "demo":
        from ladderlab.data.corpus import cache_root
        from ladderlab.data.demo_corpus import build_demo

        console.print("building the demo corpus (cached after the first time) ...")
        build_demo(cache_root(cfg.data.cache_dir))
    console.print(f"training ladder {cfg.name!r} into {out}")
    run_ladder(cfg, out, console=console)
    trained = time.perf_counter() - start
    summary = make_report(out, bootstrap=bootstrap, seed=seed, console=console,
                          check=lambda mixing: check_mixture(cfg, mixing, Path(out) / "mixture-check", console))
    summary["seconds"] = {"train": trained, "total": time.perf_counter() - start}
    for section in (summary["scaling"], summary.get("mixture_check", {})):  # the checks again, last on screen
        if "line" in section:
            console.print(section["line"])
    console.print(f"demo finished in {summary['seconds']['total']:.0f} s (ladder {trained:.0f} s); "
                  f"report in {Path(out) / 'report' / 'report.md'}")
    return summary


def check_mixture(cfg: LadderConfig, mixing: dict[str, Any], out: Path, console: Console) -> dict[str, Any]:
    """Train the predicted best mixture at the sweep's size and multiple; compare actual with predicted loss."""
    label, model = next(iter(models(cfg).items()))
    check = dataclasses.replace(
        cfg, name=f"{cfg.name}-mixture-check", sizes=(), multiples=(mixing["multiple"],), design=0, seeds=cfg.seeds[:1],
        shapes={label: (model.d_model, model.n_layers, model.n_heads, model.d_ff)},
        mixtures={"best": {d: round(v, 4) for d, v in mixing["ratios"].items()}})
    table = run_ladder(check, out, console=console)
    actual = float(table["loss"][-1])
    error = 100 * (mixing["loss"] - actual) / actual
    lo, hi = mixing["interval"]
    line = (f"mixing-law check: the best mixture trained at N={mixing['N']:,.0f}, {mixing['multiple']:g}xC: predicted "
            f"{mixing['loss']:.4f} (90% interval {lo:.4f}-{hi:.4f}), actual {actual:.4f} (error {error:+.2f}%), "
            f"{verdict(actual, (lo, hi), 'the actual loss')}; main mixture {mixing['main_loss']:.4f}")
    console.print(line)
    return {"predicted": mixing["loss"], "interval": [lo, hi], "actual": actual, "error_pct": error,
            "inside": inside(actual, (lo, hi)), "main_loss": mixing["main_loss"], "line": line}
