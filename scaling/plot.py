"""PNG plots of a fit: the data with the fitted curves (extrapolation dashed) and predicted vs observed."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from ladderlab.paths import replacing  # noqa: E402
from ladderlab.scaling.engine.law import Data, FittedLaw  # noqa: E402

MARKERS = ("o", "s", "^", "D", "v", "P")


def size_colors(values: np.ndarray) -> dict[float, tuple]:
    """A distinct colour per value (model size): the qualitative tab10 palette, viridis beyond ten."""
    values = np.unique(values)
    if len(values) <= 10:
        palette = plt.cm.tab10(np.arange(len(values)))
    else:
        palette = plt.cm.viridis(np.linspace(0, 0.9, len(values)))
    return dict(zip(values.tolist(), palette))


def save(fig, path: str | Path) -> None:
    """Tight layout, write the image (atomically, and to an object-store URL too: `paths.replacing`; the format
    from the name's suffix, PNG without one), free the figure."""
    fig.tight_layout()
    with replacing(path) as tmp:
        fig.savefig(tmp, dpi=110, format=Path(str(path)).suffix[1:] or "png")
    plt.close(fig)


def _has_curves(fitted: FittedLaw) -> bool:
    """Whether the law has a curve view: loss against D (one curve per value of its other inputs) or against its
    only input. Other laws (e.g. annealing's S1, S2) are shown as predicted vs observed only."""
    return "D" in fitted.law.inputs or len(fitted.law.inputs) == 1


def plot_fit(fitted: FittedLaw, x: Data, y: np.ndarray, path: str | Path, extend: float = 10.0) -> None:
    """The data with the fitted curves beside predicted vs observed (only the latter for a law with no curve view)."""
    curves = _has_curves(fitted)
    fig, axes = plt.subplots(1, 2 if curves else 1, figsize=(11, 4.5) if curves else (5.5, 4.5), squeeze=False)
    if curves:
        handles = draw_fit(axes[0, 0], fitted, x, y, extend)
        if handles:
            axes[0, 0].legend(handles=handles, fontsize=7, ncol=2 if len(handles) > 6 else 1)
    _parity(axes[0, -1], y, fitted.predict(**x))
    axes[0, -1].set_title(f"{fitted.law.name}: mean abs error {fitted.mape:.2f}%")
    save(fig, path)


def draw_fit(ax, fitted: FittedLaw, x: Data, y: np.ndarray, extend: float = 10.0) -> list:
    """Data and fitted curves on `ax`: against D, one curve per value of the other inputs (per model size for
    L(N, D), per size and unique tokens for the data-constrained law), or against the law's only input. Returns
    the legend entries (colour per size, marker per unique-token count) for the caller's legend."""
    inputs = fitted.law.inputs
    if "D" not in inputs:
        _curve(ax, fitted, x[inputs[0]], y, inputs[0], extend)
        return []
    others = [k for k in inputs if k != "D"]
    keys = np.stack([x[k] for k in others], axis=1)
    colors = size_colors(keys[:, 0])  # colour by the first other input (N), marker by the second (U) if few
    second = np.unique(keys[:, 1]).tolist() if len(others) > 1 else []
    markers = {v: MARKERS[i] for i, v in enumerate(second)} if len(second) <= len(MARKERS) else {}
    for g in np.unique(keys, axis=0):
        m = (keys == g).all(axis=1)
        fixed = dict(zip(others, g))
        ax.scatter(x["D"][m], y[m], color=colors[g[0]], s=16, marker=markers.get(g[-1], "o"), zorder=3)
        d_lo, d_hi = x["D"][m].min(), x["D"][m].max()
        for d, ls in ((np.geomspace(d_lo, d_hi, 50), "-"), (np.geomspace(d_hi, d_hi * extend, 20), "--")):
            ax.plot(d, fitted.predict(D=d, **{k: np.full_like(d, v) for k, v in fixed.items()}), color=colors[g[0]],
                    ls=ls, lw=1.2)
    handles = [Line2D([], [], color=c, marker="o", ls="-", label=f"{others[0]}={v:.3g}") for v, c in colors.items()]
    handles += [Line2D([], [], color="0.4", marker=mk, ls="none", label=f"{others[1]}={v:.3g}")
                for v, mk in markers.items()]
    title = f"fit per {' and '.join(others)} (dashed: extrapolation)"
    if len(colors) > 12:  # a legend of so many sizes would cover the plot
        handles = handles[len(colors):]
        title += f"\ncolour: {others[0]} from smallest (purple) to largest (yellow)"
    ax.set(xscale="log", xlabel="tokens D", ylabel="loss", title=title)
    return handles


def _curve(ax, fitted: FittedLaw, v: np.ndarray, y: np.ndarray, name: str, extend: float) -> None:
    ax.scatter(v, y, s=14)
    inside = np.geomspace(v.min(), v.max(), 80)
    beyond = np.geomspace(v.max(), v.max() * extend, 30)
    ax.plot(inside, fitted.predict(**{name: inside}), "C1")
    ax.plot(beyond, fitted.predict(**{name: beyond}), "C1--")
    ax.set(xscale="log", xlabel=name, ylabel="loss", title="fit (dashed: extrapolation)")


def _parity(ax, observed: np.ndarray, predicted: np.ndarray) -> None:
    """Predicted against observed, with the diagonal, on `ax`."""
    lo, hi = min(predicted.min(), observed.min()), max(predicted.max(), observed.max())
    ax.plot([lo, hi], [lo, hi], "k:", lw=1)
    ax.scatter(observed, predicted, s=14)
    ax.set(xlabel="observed", ylabel="predicted")
