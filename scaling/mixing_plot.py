"""PNG plots for mixtures: held-out predicted vs observed, the loss landscape over three domains, the CMR curve."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ladderlab.scaling.cmr import CMRResult  # noqa: E402
from ladderlab.scaling.mixing import MixingModel  # noqa: E402
from ladderlab.scaling.mixture import MixturePrediction  # noqa: E402


def plot_mixing(model: MixingModel, path: str | Path) -> None:
    """One panel per validation column: out-of-fold prediction against observed loss."""
    cols = model.targets
    k = int(np.ceil(np.sqrt(len(cols))))
    fig, axes = plt.subplots(k, k, figsize=(3.2 * k, 3.0 * k), squeeze=False)
    for ax, col in zip(axes.ravel(), cols):
        y, p = model.observed[col], model.oof[col]
        lo, hi = min(y.min(), p.min()), max(y.max(), p.max())
        ax.plot([lo, hi], [lo, hi], "k:", lw=1)
        ax.scatter(y, p, s=6)
        ax.set_title(col[-28:], fontsize=8)
    for ax in axes.ravel()[len(cols):]:
        ax.axis("off")
    fig.supxlabel("observed loss")
    fig.supylabel("held-out prediction")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_landscape(model: MixingModel, pred: MixturePrediction, path: str | Path, n: int = 120) -> None:
    """Predicted target over the three largest domains of the optimum (the others held at their optimal shares);
    with two domains, the target against the first domain's share."""
    if len(model.domains) == 2:
        share = np.linspace(0, 1, 201)
        fig, ax = plt.subplots(figsize=(6, 4.5))
        ax.plot(share, model.predict_target(np.stack([share, 1 - share], axis=1), pred.target))
        ax.axvline(pred.ratios[model.domains[0]], color="C3", label="optimum")
        ax.set(xlabel=f"share of {model.domains[0]}", ylabel="predicted target loss")
        ax.legend()
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return
    top = sorted(pred.ratios, key=lambda d: -pred.ratios[d])[:3]
    rest = {d: v for d, v in pred.ratios.items() if d not in top}
    mass = 1.0 - sum(rest.values())
    a, b = np.meshgrid(np.linspace(0, 1, n), np.linspace(0, 1, n), indexing="ij")
    inside = a + b <= 1
    shares = {top[0]: a[inside] * mass, top[1]: b[inside] * mass, top[2]: (1 - a[inside] - b[inside]) * mass}
    r = np.stack([shares[d] if d in shares else np.full(inside.sum(), rest[d]) for d in model.domains], axis=1)
    z = model.predict_target(r, pred.target)
    x_plot, y_plot = b[inside] + 0.5 * a[inside], a[inside] * np.sqrt(3) / 2  # barycentric -> triangle
    fig, ax = plt.subplots(figsize=(6, 5))
    sc = ax.tricontourf(x_plot, y_plot, z, levels=30, cmap="viridis")
    fig.colorbar(sc, label="predicted target loss")
    opt = [pred.ratios[d] / mass for d in top]
    ax.plot(opt[1] + 0.5 * opt[0], opt[0] * np.sqrt(3) / 2, "r*", ms=14, label="optimum")
    for (tx, ty), d in zip([(0.5, np.sqrt(3) / 2 + 0.03), (1.0, -0.05), (0.0, -0.05)], top):
        ax.text(tx, ty, d, ha="center")
    ax.set_axis_off()
    ax.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_cmr(res: CMRResult, path: str | Path) -> None:
    """Left: predicted general-loss increase against ratio at the target run; right: CMR against tokens."""
    from ladderlab.scaling.cmr import increase_of

    fig, (ax, ax_t) = plt.subplots(1, 2, figsize=(11, 4.5))
    r = np.linspace(0, 1, 200)
    size = res.size if res.size is not None else 1e9
    ax.plot(r, increase_of(res.general.params, r, res.tokens, size), label=f"T = {res.tokens:.3g}")
    ax.axhline(res.tolerance, color="k", ls=":", label="tolerance")
    ax.axvline(res.ratio, color="C3", label=f"CMR = {res.ratio:.3f}")
    ax.set(xlabel="domain ratio", ylabel="general-loss increase", title="trade-off at the target run")
    ax.legend()
    t = np.array([row["tokens"] for row in res.curve])
    ax_t.plot(t, [row["ratio"] for row in res.curve], "o-")
    if "ratio_lo" in res.curve[0]:
        ax_t.fill_between(t, [row["ratio_lo"] for row in res.curve], [row["ratio_hi"] for row in res.curve], alpha=0.3)
    ax_t.set(xscale="log", xlabel="CPT tokens", ylabel="critical mixture ratio", title="CMR against tokens")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
