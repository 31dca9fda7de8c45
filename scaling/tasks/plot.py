"""PNG plot of one task's fit: step 1 (task loss against tokens per size) beside step 2 (accuracy against task loss)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ladderlab.scaling.engine.law import Data
from ladderlab.scaling.plot import plt, save, size_colors
from ladderlab.scaling.tasks.laws import TaskLaw
from ladderlab.scaling.tasks.report import Target


def plot_task(law: TaskLaw, p1: Data, p2: Data, targets: Sequence[Target], path: str | Path) -> None:
    """One task: step 1 by its method (task loss vs tokens per size, targets starred) and step 2 (accuracy vs task loss)."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.5))
    sizes = np.unique(np.concatenate([p1["N"], [t.N for t in targets]]))
    colors = size_colors(sizes)
    d_max = max([p1["D"].max(), *[t.D for t in targets]])
    for n in sizes:
        m = p1["N"] == n
        ax1.scatter(p1["D"][m], p1["loss"][m], color=colors[n], s=16, label=f"N={n:.3g}")
        d = np.geomspace(p1["D"].min() / 2, d_max * 1.5, 60)
        ax1.plot(d, [law.loss_point(n, di) for di in d], color=colors[n], lw=1, ls="-" if m.any() else "--")
    l_all = []
    for t in targets:
        loss = law.loss_point(t.N, t.D)
        ax1.scatter([t.D], [loss], marker="*", s=120, color=colors[t.N], edgecolor="k", zorder=3)
        ax2.scatter([loss], [float(law.step2.predict(L=loss)[0])], marker="*", s=120, color=colors[t.N], edgecolor="k", zorder=3)
        l_all.append(loss)
    ax1.set(xscale="log", xlabel="tokens D", ylabel="task loss (bpb)", title=f"{law.task} step 1, {law.method} (stars: targets)")
    ax1.legend(fontsize=7)
    ax2.scatter(p2["L"], p2["acc"], s=4, alpha=0.4, label="checkpoints (smoothed)")
    grid = np.linspace(min([p2["L"].min(), *l_all]) * 0.9, p2["L"].max() * 1.05, 100)
    ax2.plot(grid, law.step2.predict(L=grid), "C1", label="sigmoid fit")
    ax2.set(xlabel="task loss (bpb)", ylabel="accuracy", title=f"{law.task} step 2")
    ax2.legend(fontsize=7)
    save(fig, path)
