"""PNG plots of a ladder from plain tables: loss curves, the scaling fit with its held-out run, predicted vs actual."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import EngFormatter, LogLocator, NullFormatter  # noqa: E402

from ladderlab.scaling.engine.law import Data, FittedLaw  # noqa: E402
from ladderlab.scaling.plot import draw_fit, save, size_colors  # noqa: E402

STYLES = ("-", "--", ":", "-.")  # line style per token multiple, the largest solid
SMOOTH = 8  # training loss: running mean over 1/SMOOTH of a run's tokens


@dataclass(frozen=True)
class Curve:
    """One run's losses against tokens: training loss at every step and validation loss at each evaluation."""

    run: str
    N: float
    multiple: float
    mixture: str
    variant: bool  # grown or continued (CPT) from another run
    train: tuple[np.ndarray, np.ndarray]
    val: tuple[np.ndarray, np.ndarray]


def plot_curves(curves: list[Curve], main: str, path: str | Path) -> None:
    """Loss against tokens, one panel each: the main mixture's validation loss (mean over the validation domains,
    at each evaluation; colour by size, line style by multiple) and its training loss (running mean over the
    mixture's own domains, so on another scale), the other mixtures' validation loss (a colour each, beside the
    main mixture's run of the same size and multiple), and the grown or CPT variants' when there are any."""
    plain = [c for c in curves if not c.variant]
    ladder = [c for c in plain if c.mixture == main]
    panels = [(f"validation loss, main mixture {main!r}", ladder, None, "val"),
              (f"training loss (running mean), main mixture {main!r}", ladder, None, "train")]
    sweep = [c for c in plain if c.mixture != main]
    if sweep:
        cells = {(c.N, c.multiple) for c in sweep}
        ref = [c for c in ladder if (c.N, c.multiple) in cells]
        panels.append(("validation loss, mixture sweep", ref + sweep, lambda c: c.mixture, "val"))
    if any(c.variant for c in curves):
        panels.append(("validation loss, growth and CPT variants", [c for c in curves if c.variant], lambda c: c.run,
                       "val"))
    panels = [p for p in panels if p[1]]  # a partly trained ladder may have no main-mixture run yet
    rows = 1 if len(panels) <= 3 else 2
    cols = int(np.ceil(len(panels) / rows))
    fig, axes = plt.subplots(rows, cols, figsize=(5.4 * cols, 4.6 * rows), squeeze=False)
    for ax, (title, group, key, what) in zip(axes.ravel(), panels):
        if key is None:
            _by_size(ax, group, what)
        else:
            colors = {k: "k" if k == main else f"C{i % 10}" for i, k in enumerate(dict.fromkeys(map(key, group)))}
            seen: set[str] = set()
            for c in group:
                _draw(ax, c, what, colors[key(c)], "-", None if key(c) in seen else key(c))  # one legend entry each
                seen.add(key(c))
            ax.legend(fontsize=7, ncol=2 if len(colors) > 8 else 1)
        ax.set(title=title, xscale="log", xlabel="tokens D", ylabel="loss (nats/token)")
        ax.title.set_fontsize(9)
        ax.xaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))  # short labels (20k), none overlapping
        ax.xaxis.set_major_formatter(EngFormatter(sep=""))
        ax.xaxis.set_minor_formatter(NullFormatter())
        _limits(ax, group, what)
    for ax in axes.ravel()[len(panels):]:
        fig.delaxes(ax)
    save(fig, path)


def _by_size(ax, group: list[Curve], what: str) -> None:
    colors = size_colors(np.array([c.N for c in group]))
    multiples = sorted({c.multiple for c in group}, reverse=True)
    styles = {m: STYLES[i % len(STYLES)] for i, m in enumerate(multiples)}
    for c in group:
        _draw(ax, c, what, colors[c.N], styles[c.multiple], None)
    handles = [Line2D([], [], color=col, lw=2, label=f"N={n:,.0f}") for n, col in colors.items()]
    handles += [Line2D([], [], color="0.3", ls=styles[m], label=f"{m:g}xC") for m in multiples]
    ax.legend(handles=handles, fontsize=7, ncol=2)


def _draw(ax, c: Curve, what: str, color, style: str, label: str | None) -> None:
    """One run: its validation losses as markers joined by a line, or its training loss as a running mean."""
    if what == "val":
        ax.plot(*c.val, color=color, ls=style, marker="o", ms=4, lw=1.5, label=label)
    else:
        ax.plot(*_smoothed(c), color=color, ls=style, lw=1.2, label=label)


def _smoothed(c: Curve) -> tuple[np.ndarray, np.ndarray]:
    """Training loss (one batch each, logged at uneven steps) as a trailing mean over 1/SMOOTH of the run's tokens."""
    d, loss = c.train
    first = np.searchsorted(d, d - (d[-1] - d[0]) / SMOOTH)  # the window [d - W, d], never empty
    total = np.concatenate([[0.0], np.cumsum(loss)])
    return d, (total[1:] - total[first]) / (np.arange(1, len(d) + 1) - first)


def _limits(ax, group: list[Curve], what: str) -> None:
    """From the first evaluation's tokens on, with a margin around the losses there: the first steps' loss (near
    the log of the vocabulary size) would dwarf the differences between runs."""
    d0 = min(c.val[0].min() for c in group) / 1.3
    d1 = max(c.val[0].max() for c in group) * 1.3
    if what == "val":
        y = np.concatenate([c.val[1] for c in group])
    else:
        y = np.concatenate([loss[d >= d0] for d, loss in map(_smoothed, group)])
    pad = 0.1 * (y.max() - y.min()) if y.size and y.max() > y.min() else 0.1
    ax.set(xlim=(d0, d1), ylim=(y.min() - pad, y.max() + pad) if y.size else None)


def plot_scaling(fitted: FittedLaw, x: Data, y: np.ndarray, held: dict, path: str | Path) -> None:
    """The fitted runs with the law's curve per size (dashed: extrapolation), and the held-out run: its actual loss
    starred and the law's prediction for it with the 90% interval."""
    fig, ax = plt.subplots(figsize=(7, 4.8))
    sizes = draw_fit(ax, fitted, x, y)
    ax.errorbar([held["D"]], [held["prediction"]], yerr=_yerr(held), fmt="D", ms=6, color="C3", mfc="w",
                elinewidth=1.5, capsize=5, zorder=4, label="held-out: prediction (90% interval)")
    ax.scatter([held["D"]], [held["actual"]], marker="*", s=180, color="C3", edgecolors="k", zorder=5,
               label=f"held-out: actual ({_where(held)})")
    ax.set_title(f"scaling law on {len(y)} runs; {held['run']} held out", fontsize=10)
    ax.legend(handles=sizes + ax.get_legend_handles_labels()[0], fontsize=7)
    save(fig, path)


def plot_predicted(actual: np.ndarray, predicted: np.ndarray, lo: np.ndarray, hi: np.ndarray, held_out: np.ndarray,
                   held: dict, path: str | Path) -> None:
    """The law's prediction (with its 90% interval) against each run's actual final loss: fitted runs as dots,
    the held-out run starred, titled with its error and whether its actual loss lies inside the interval."""
    fig, ax = plt.subplots(figsize=(5.8, 5.2))
    span = [np.nanmin(np.concatenate([actual, predicted, lo])), np.nanmax(np.concatenate([actual, predicted, hi]))]
    ax.plot(span, span, "k:", lw=1, label="predicted = actual")
    fit = ~held_out
    bars = np.stack([predicted - lo, hi - predicted]).clip(0) if np.isfinite(lo).all() and np.isfinite(hi).all() \
        else None  # clipped: a bootstrap interval of exact data can miss its point by rounding
    ax.errorbar(actual[fit], predicted[fit], yerr=None if bars is None else bars[:, fit], fmt="o", ms=4, color="C0",
                elinewidth=0.8, capsize=2, label="fitted runs" + ("" if bars is None else " (90% interval)"))
    ax.errorbar([held["actual"]], [held["prediction"]], yerr=_yerr(held), fmt="*", ms=14, color="C3", mec="k",
                elinewidth=1.5, capsize=5, zorder=4, label=f"held-out {held['run']}")
    lo_hi = "" if _yerr(held) is None else f"\ninterval [{held['interval'][0]:.4f}, {held['interval'][1]:.4f}]"
    ax.text(0.97, 0.03, f"{held['run']}\nactual {held['actual']:.4f}\npredicted {held['prediction']:.4f}{lo_hi}",
            transform=ax.transAxes, ha="right", va="bottom", fontsize=8, color="C3")
    ax.set(xlabel="actual final loss", ylabel="predicted final loss",
           title=f"held-out error {held['error_pct']:+.2f}%, {_where(held)}")
    ax.legend(fontsize=8, loc="upper left")
    save(fig, path)


def _where(held: dict) -> str:
    return {True: "inside its 90% interval", False: "outside its 90% interval", None: "no interval"}[held.get("inside")]


def _yerr(held: dict) -> np.ndarray | None:
    """The held-out prediction's error bar (below, above); None without an interval (no bootstrap)."""
    lo, hi = held["interval"]
    return np.array([[held["prediction"] - lo], [hi - held["prediction"]]]) if np.isfinite([lo, hi]).all() else None
