"""PNG plot of a growth comparison: every run's validation curve against FLOPs, the growth points marked."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ladderlab.scaling.plot import plt, save


def plot_growth_curves(runs: Sequence[dict[str, Any]], path: str | Path, title: str) -> None:
    """Loss against FLOPs (log) for every run ({run, seed, curve: [{step, flops, loss}]}, as growth_runs.csv holds
    them): one colour per run, one line per seed. A grown run's step 0 (the moment of growth, its loss not trained
    for) is drawn as a hollow marker joined by a dotted line to its trained points."""
    names = list(dict.fromkeys(r["run"] for r in runs))
    colors = dict(zip(names, plt.cm.tab10(np.arange(len(names)) % 10)))
    fig, ax = plt.subplots(figsize=(8, 5))
    labelled: set[str] = set()
    for r in runs:
        steps = np.array([p["step"] for p in r["curve"]])
        flops = np.array([p["flops"] for p in r["curve"]], float)
        loss = np.array([p["loss"] for p in r["curve"]], float)
        color, trained = colors[r["run"]], steps > 0
        ax.plot(flops[trained], loss[trained], color=color, lw=1.3, alpha=0.85,
                label=None if r["run"] in labelled else r["run"])
        labelled.add(r["run"])
        if r["run"] != "scratch" and (~trained).any() and trained.any():  # the growth point, joined to the curve
            at, first = np.flatnonzero(~trained)[0], np.flatnonzero(trained)[0]
            ax.plot(flops[[at, first]], loss[[at, first]], color=color, lw=1, ls=":")
            ax.scatter(flops[at], loss[at], s=36, facecolors="none", edgecolors=[color], zorder=3,
                       label=None if "growth" in labelled else "growth point (step 0, not counted)")
            labelled.add("growth")
    ax.set(xscale="log", xlabel="training FLOPs (6N per token, both phases)", ylabel="validation loss", title=title)
    ax.legend(fontsize=8)
    save(fig, path)
