"""PNG plots of a ladder from plain tables: training-loss curves and predicted vs actual final losses."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def plot_curves(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: str | Path) -> None:
    """Training loss against tokens, one line per run (run id -> (tokens, loss))."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    colors = plt.cm.viridis(np.linspace(0, 0.9, max(len(curves), 1)))
    for (run, (d, loss)), color in zip(curves.items(), colors):
        ax.plot(d, loss, color=color, lw=1, label=run)
    ax.set(xscale="log", xlabel="tokens D", ylabel="training loss (nats/token)", title="loss curves")
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_predicted(actual: np.ndarray, predicted: np.ndarray, held_out: np.ndarray, path: str | Path) -> None:
    """Law prediction against actual final loss; held-out runs (not fitted) as red stars."""
    fig, ax = plt.subplots(figsize=(5, 5))
    lo, hi = min(actual.min(), predicted.min()), max(actual.max(), predicted.max())
    ax.plot([lo, hi], [lo, hi], "k:", lw=1)
    ax.scatter(actual[~held_out], predicted[~held_out], s=16, label="fitted runs")
    ax.scatter(actual[held_out], predicted[held_out], s=120, marker="*", color="C3", label="held-out")
    ax.set(xlabel="actual final loss", ylabel="predicted", title="predicted vs actual")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
