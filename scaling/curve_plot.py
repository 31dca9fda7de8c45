"""PNG plot of loss curves predicted along a schedule against the observed ones."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ladderlab.scaling.plot import plt, save


def plot_curves(predicted: Sequence[tuple[str, np.ndarray, np.ndarray]],
                observed: Sequence[tuple[str, np.ndarray, np.ndarray]], path: str | Path, title: str) -> None:
    """Left: loss against step (predictions as lines from the first observed step, observations as dots, same
    colour per name; a legend up to 8 names); right: observed against predicted at the observed steps."""
    fig, (ax, ax_p) = plt.subplots(1, 2, figsize=(12, 4.5))
    colour = {name: f"C{i % 10}" for i, name in enumerate(dict.fromkeys(n for n, _, _ in [*predicted, *observed]))}
    lookup = {name: (s, y) for name, s, y in predicted}
    first = min((s.min() for _, s, _ in observed), default=1)  # the law is not drawn through early warm-up
    for name, steps, loss in predicted:
        keep = steps >= first
        ax.plot(steps[keep], loss[keep], color=colour[name], label=f"{name} (law)")
    for name, steps, loss in observed:
        ax.plot(steps, loss, "o", ms=3, color=colour[name], label=f"{name} (observed)")
        if name in lookup:
            s, y = lookup[name]
            ax_p.plot(np.interp(steps, s, y), loss, "o", ms=3, color=colour[name], label=name)
    ax.set(xscale="log", xlabel="step", ylabel="loss", title=title)
    if len(colour) <= 8:  # a legend of more runs would hide the curves
        ax.legend(fontsize=7)
    lims = [min(ax_p.get_xlim()[0], ax_p.get_ylim()[0]), max(ax_p.get_xlim()[1], ax_p.get_ylim()[1])]
    ax_p.plot(lims, lims, "k:", lw=1)
    ax_p.set(xlabel="predicted loss", ylabel="observed loss", title="observed against predicted")
    save(fig, path)
