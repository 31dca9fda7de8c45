"""PNG plots of a fit: the data, the fitted curves (with their extrapolation dashed) and predicted vs observed."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ladderlab.scaling.law import Data, FittedLaw  # noqa: E402


def plot_fit(fitted: FittedLaw, x: Data, y: np.ndarray, path: str | Path, extend: float = 10.0) -> None:
    """Left: data and fitted curves (per model size for L(N, D)); right: predicted vs observed."""
    fig, (ax, ax_pv) = plt.subplots(1, 2, figsize=(11, 4.5))
    inputs = fitted.law.inputs
    if inputs == ("N", "D"):
        _curves_per_size(ax, fitted, x, y, extend)
    elif len(inputs) == 1:
        _curve(ax, fitted, x[inputs[0]], y, inputs[0], extend)
    else:
        ax.axis("off")
    pred = fitted.predict(**x)
    lo, hi = min(pred.min(), y.min()), max(pred.max(), y.max())
    ax_pv.plot([lo, hi], [lo, hi], "k:", lw=1)
    ax_pv.scatter(y, pred, s=14)
    ax_pv.set(xlabel="observed", ylabel="predicted", title=f"{fitted.law.name}: MAPE {fitted.mape:.2f}%")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _curves_per_size(ax, fitted: FittedLaw, x: Data, y: np.ndarray, extend: float) -> None:
    sizes = np.unique(x["N"])
    colors = plt.cm.viridis(np.linspace(0, 0.9, len(sizes)))
    for n, color in zip(sizes, colors):
        m = x["N"] == n
        d_lo, d_hi = x["D"][m].min(), x["D"][m].max()
        ax.scatter(x["D"][m], y[m], color=color, s=14, label=f"N={n:.3g}")
        inside = np.geomspace(d_lo, d_hi, 50)
        beyond = np.geomspace(d_hi, d_hi * extend, 20)
        ax.plot(inside, fitted.predict(N=np.full_like(inside, n), D=inside), color=color)
        ax.plot(beyond, fitted.predict(N=np.full_like(beyond, n), D=beyond), color=color, ls="--")
    ax.set(xscale="log", xlabel="tokens D", ylabel="loss", title="fit per model size (dashed: extrapolation)")
    ax.legend(fontsize=7)


def _curve(ax, fitted: FittedLaw, v: np.ndarray, y: np.ndarray, name: str, extend: float) -> None:
    ax.scatter(v, y, s=14)
    inside = np.geomspace(v.min(), v.max(), 80)
    beyond = np.geomspace(v.max(), v.max() * extend, 30)
    ax.plot(inside, fitted.predict(**{name: inside}), "C1")
    ax.plot(beyond, fitted.predict(**{name: beyond}), "C1--")
    ax.set(xscale="log", xlabel=name, ylabel="loss", title="fit (dashed: extrapolation)")


def plot_task(law, p1: Data, p2: Data, targets: list, path: str | Path) -> None:
    """One task: step 1 (task loss vs tokens per size, targets starred) and step 2 (accuracy vs task loss)."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.5))
    sizes = np.unique(np.concatenate([p1["N"], [t.N for t in targets]]))
    colors = dict(zip(sizes, plt.cm.viridis(np.linspace(0, 0.9, len(sizes)))))
    d_max = max([p1["D"].max(), *[t.D for t in targets]])
    for n in sizes:
        m = p1["N"] == n
        ax1.scatter(p1["D"][m], p1["loss"][m], color=colors[n], s=16, label=f"N={n:.3g}")
        d = np.geomspace(p1["D"].min() / 2, d_max * 1.5, 60)
        ax1.plot(d, law.step1.predict(N=np.full_like(d, n), D=d), color=colors[n], lw=1, ls="-" if m.any() else "--")
    l_all = []
    for t in targets:
        loss = float(law.step1.predict(N=t.N, D=t.D)[0])
        ax1.scatter([t.D], [loss], marker="*", s=120, color=colors[t.N], edgecolor="k", zorder=3)
        ax2.scatter([loss], [float(law.step2.predict(L=loss)[0])], marker="*", s=120, color=colors[t.N], edgecolor="k", zorder=3)
        l_all.append(loss)
    ax1.set(xscale="log", xlabel="tokens D", ylabel="task loss (bpb)", title=f"{law.task} step 1 (stars: targets)")
    ax1.legend(fontsize=7)
    ax2.scatter(p2["L"], p2["acc"], s=4, alpha=0.4, label="checkpoints (smoothed)")
    grid = np.linspace(min([p2["L"].min(), *l_all]) * 0.9, p2["L"].max() * 1.05, 100)
    ax2.plot(grid, law.step2.predict(L=grid), "C1", label="sigmoid fit")
    ax2.set(xlabel="task loss (bpb)", ylabel="accuracy", title=f"{law.task} step 2")
    ax2.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
