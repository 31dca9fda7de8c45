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
