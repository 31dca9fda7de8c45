"""PNG plots for mixtures: held-out predicted vs observed, the loss landscape over three domains, the CMR curve."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ladderlab.scaling.mixing.cmr import CMRResult, change_of
from ladderlab.scaling.mixing.model import MixingModel
from ladderlab.scaling.mixing.optimize import MixturePrediction
from ladderlab.scaling.plot import plt, save


def plot_mixing(model: MixingModel, path: str | Path) -> None:
    """One panel per validation column: out-of-fold prediction against observed loss (a near-square grid of
    exactly as many panels as columns, so the figure has no empty rows)."""
    cols = model.targets
    ncols = int(np.ceil(np.sqrt(len(cols))))
    nrows = int(np.ceil(len(cols) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(0.6 + 3.4 * ncols, 0.4 + 3.2 * nrows), squeeze=False)
    for ax, col in zip(axes.ravel(), cols):
        y, p = model.observed[col], model.oof[col]
        lo, hi = min(y.min(), p.min()), max(y.max(), p.max())
        ax.plot([lo, hi], [lo, hi], "k:", lw=1)
        ax.scatter(y, p, s=6)
        ax.set_title(col if len(col) <= 32 else "..." + col[-29:], fontsize=8)
    for ax in axes.ravel()[len(cols):]:
        fig.delaxes(ax)
    if len(cols) == 1:
        axes[0, 0].set(xlabel="observed loss", ylabel="held-out prediction")
    else:
        fig.supxlabel("observed loss", fontsize=10)
        fig.supylabel("held-out prediction", fontsize=10)
    save(fig, path)


def plot_landscape(model: MixingModel, pred: MixturePrediction, path: str | Path, n: int = 120) -> None:
    """Predicted target over the three largest domains of the optimum (the others held at their optimal shares),
    the optimum starred and the fitted runs' mixtures as dots coloured by their observed target (on the same scale,
    their shares of those three domains renormalised); with two domains, the target against the first domain's
    share, the runs as points."""
    runs = _fitted_runs(model, pred.target)
    if len(model.domains) == 2:
        share = np.linspace(0, 1, 201)
        fig, ax = plt.subplots(figsize=(6, 4.5))
        ax.plot(share, model.predict_target(np.stack([share, 1 - share], axis=1), pred.target), label="predicted")
        if runs is not None:
            ax.scatter(runs[0][:, 0], runs[1], color="k", s=14, zorder=3, label="fitted runs (observed)")
        ax.axvline(pred.ratios[model.domains[0]], color="C3", label="optimum")
        ax.set(xlabel=f"share of {model.domains[0]}", ylabel="target loss")
        ax.legend()
        save(fig, path)
        return
    top = sorted(pred.ratios, key=lambda d: -pred.ratios[d])[:3]
    rest = {d: v for d, v in pred.ratios.items() if d not in top}
    mass = 1.0 - sum(rest.values())
    a, b = np.meshgrid(np.linspace(0, 1, n), np.linspace(0, 1, n), indexing="ij")
    inside = a + b <= 1
    shares = {top[0]: a[inside] * mass, top[1]: b[inside] * mass, top[2]: (1 - a[inside] - b[inside]) * mass}
    r = np.stack([shares[d] if d in shares else np.full(inside.sum(), rest[d]) for d in model.domains], axis=1)
    z = model.predict_target(r, pred.target)
    fig, ax = plt.subplots(figsize=(6.4, 5))
    sc = ax.tricontourf(*_triangle(a[inside], b[inside]), z, levels=30, cmap="viridis")
    fig.colorbar(sc, label="target loss", shrink=0.9)
    if runs is not None:
        idx = [model.domains.index(d) for d in top]
        r3 = runs[0][:, idx]
        keep = r3.sum(axis=1) > 0
        r3 = r3[keep] / r3[keep].sum(axis=1, keepdims=True)
        ax.scatter(*_triangle(r3[:, 0], r3[:, 1]), c=runs[1][keep], cmap="viridis", norm=sc.norm, s=60,
                   edgecolors="k", linewidths=1.2, zorder=3, label="fitted runs (fill: observed loss)")
    opt = [pred.ratios[d] / mass for d in top]
    ax.plot(*_triangle(opt[0], opt[1]), "r*", ms=16, mec="k", label="optimum", zorder=4)
    corners = [(0.5, np.sqrt(3) / 2 + 0.04, "center", "bottom"), (1.03, -0.04, "right", "top"),
               (-0.03, -0.04, "left", "top")]  # bottom labels run inwards, so long names stay in the figure
    for (tx, ty, ha, va), d in zip(corners, top):
        ax.text(tx, ty, d, ha=ha, va=va, fontsize=9)
    ax.set(xlim=(-0.05, 1.05), ylim=(-0.12, np.sqrt(3) / 2 + 0.12), aspect="equal")
    ax.set_axis_off()
    note = (f"\n(the other {len(rest)} domains at their optimal shares; runs by their shares of these three)"
            if rest else "")
    ax.set_title(f"predicted target loss over the three largest shares of the optimum{note}", fontsize=9)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=2, fontsize=8, frameon=False)
    save(fig, path)


def _triangle(a, b) -> tuple:
    """Barycentric shares (a of the top corner, b of the right one) -> x, y in the equilateral triangle."""
    return b + 0.5 * a, a * np.sqrt(3) / 2


def _fitted_runs(model: MixingModel, weights: dict[str, float]) -> tuple[np.ndarray, np.ndarray] | None:
    """The fitted runs' shares (runs x domains) and observed target, or None for a model saved without them."""
    if not model.proportions:
        return None
    return (np.stack([model.proportions[d] for d in model.domains], axis=1),
            sum(w * model.observed[c] for c, w in weights.items()))


def plot_cmr(res: CMRResult, path: str | Path) -> None:
    """Left: predicted general-loss change against ratio at the target run; right: CMR against tokens."""
    fig, (ax, ax_t) = plt.subplots(1, 2, figsize=(11, 4.5))
    r = np.linspace(0, 1, 200)
    size = res.size if res.size is not None else 1e9
    ax.plot(r, change_of(res.general.law, res.general.theta, r, res.tokens, size)[0], label=f"T = {res.tokens:.3g}")
    ax.axhline(res.tolerance, color="k", ls=":", label="tolerance")
    ax.axvline(res.ratio, color="C3", label=f"CMR = {res.ratio:.3f}")
    ax.set(xlabel="domain ratio", ylabel="general-loss change", title="trade-off at the target run")
    ax.legend()
    t = np.array([row["tokens"] for row in res.curve])
    ax_t.plot(t, [row["ratio"] for row in res.curve], "o-")
    if "ratio_lo" in res.curve[0]:
        ax_t.fill_between(t, [row["ratio_lo"] for row in res.curve], [row["ratio_hi"] for row in res.curve], alpha=0.3)
    ax_t.set(xscale="log", xlabel="CPT tokens", ylabel="critical mixture ratio", title="CMR against tokens")
    save(fig, path)
