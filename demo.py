"""`ladderlab demo`: build the demo corpus, train a small ladder on this CPU, fit its laws and print the report.

The report holds the scaling law with a held-out check (the largest run predicted from the others), the mixing law
with the best mixture for a larger target, and a check of that mixture: it and the main mixture are trained at the
sweep's size with CHECK_SEEDS seeds each, the best one's actual loss is compared with the prediction and its
interval, and the difference from the main mixture is called significant only when a one-sided Welch t-test over
the seeds gives p < 0.05, in the same report.md. `--quick` runs a smaller ladder
on text already on the machine. `--bundled` runs the earlier demo instead: laws fitted to bundled real training runs
(no training).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from ladderlab.ladders.config import LadderConfig
from ladderlab.ladders.plan import models
from ladderlab.ladders.report import final_rows, inside, make_report, verdict
from ladderlab.ladders.runner import run_ladder

CONFIGS = Path(__file__).resolve().parent / "configs"
CHECK_SEEDS = (0, 1, 2)  # seeds of the mixture check's two mixtures (its noise estimate)


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
    if "why" in summary["scaling"]:
        console.print(f"[yellow]why:[/yellow] {summary['scaling']['why']}")
    console.print(f"demo finished in {summary['seconds']['total']:.0f} s (ladder {trained:.0f} s); "
                  f"report in {Path(out) / 'report' / 'report.md'}")
    return summary


def check_mixture(cfg: LadderConfig, mixing: dict[str, Any], out: Path, console: Console) -> dict[str, Any]:
    """Train the predicted best mixture and the main one at the sweep's size and multiple, CHECK_SEEDS seeds each;
    compare the best one's actual loss with its prediction, and with the main mixture's (Welch t-test)."""
    from scipy import stats

    label, model = next(iter(models(cfg).items()))
    main = next(iter(cfg.mixtures))
    check = dataclasses.replace(
        cfg, name=f"{cfg.name}-mixture-check", sizes=(), multiples=(mixing["multiple"],), design=0, seeds=CHECK_SEEDS,
        shapes={label: (model.d_model, model.n_layers, model.n_heads, model.d_ff)}, mixture_grid="full",
        mixtures={"best": {d: round(v, 4) for d, v in mixing["ratios"].items()}, main: cfg.mixtures[main]})
    table = run_ladder(check, out, console=console)
    final = final_rows(table)
    loss = {m: np.array([r["loss"] for r in final if r["mixture"] == m], float) for m in ("best", main)}
    actual, base = float(loss["best"].mean()), float(loss[main].mean())
    p = float(stats.ttest_ind(loss["best"], loss[main], equal_var=False, alternative="less").pvalue)
    error = 100 * (mixing["loss"] - actual) / actual
    lo, hi = mixing["interval"]
    gain = ("significantly better" if p < 0.05 else "not significantly better") + f" (one-sided Welch p = {p:.3f})"
    line = (f"mixing-law check: the best mixture trained at N={mixing['N']:,.0f}, {mixing['multiple']:g}xC, "
            f"{len(CHECK_SEEDS)} seeds: predicted {mixing['loss']:.4f} (90% interval {lo:.4f}-{hi:.4f}), actual "
            f"{actual:.4f} +- {loss['best'].std(ddof=1):.4f} (error {error:+.2f}%), "
            f"{verdict(actual, (lo, hi), 'the actual loss')}; {main!r} {base:.4f} +- {loss[main].std(ddof=1):.4f}: the "
            f"best mixture is {actual - base:+.4f}, {gain}")
    console.print(line)
    return {"predicted": mixing["loss"], "interval": [lo, hi], "actual": actual, "error_pct": error,
            "inside": inside(actual, (lo, hi)), "main_loss": mixing["main_loss"], "main_actual": base,
            "seeds": len(CHECK_SEEDS), "difference": actual - base, "p_value": p, "significant": p < 0.05,
            "line": line}
