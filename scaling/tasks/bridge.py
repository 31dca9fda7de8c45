"""Loss-to-loss step 1: a task's loss from the general validation loss, which scales far more regularly.

Brandfonbrener et al. 2024 ("Loss-to-Loss Prediction") find that losses of one recipe on two datasets follow a
power law of each other. Here the general validation loss L_g(N, D) = E + A/N^alpha + B/D^beta is fitted on one
point per run, and each task's loss is bridged from it as L_task = E + K L_g^kappa on the same points (final
checkpoints only: mid-run checkpoints, taken high on the cosine schedule, bias the bridge and its prediction low).
The bridge's floor of the general loss is 0; a free floor was tried and extrapolated worse on the OLMo ladder.
"""

from __future__ import annotations

import numpy as np

from ladderlab.scaling.engine.law import Data, Law, Param
from ladderlab.scaling.tables.runs import Runs

# The general validation loss bridged from, chosen by backtests on the OLMo ladder that leave the 3.2B rung out
# (190M-760M -> 1.3B and 190M-370M -> 760M); c4_en, wikitext_103 and dolma books/pes2o/common-crawl do about as well.
GENERAL = "val/pile"


class LossToLoss(Law):
    """Task loss as a power of the general loss: L_task = E + K L_g^kappa (E, K > 0, kappa in [0, 10])."""

    name = "loss-to-loss"
    inputs = ("L",)
    params = (
        Param("E", True, -10.0, 5.0, (-3.0, -1.0, -0.5, 0.0)),
        Param("K", True, -20.0, 20.0, (-4.0, -2.0, 0.0, 2.0)),
        Param("kappa", False, 0.0, 10.0, (0.5, 1.0, 2.0, 4.0)),
    )

    def predict_batch(self, theta_SxP: np.ndarray, x: Data) -> np.ndarray:
        e, k, kappa = (theta_SxP[:, i : i + 1] for i in range(3))
        return np.exp(e) + np.exp(k + kappa * np.log(x["L"])[None, :])


def general_points(runs: Runs, column: str, last: int) -> dict[str, np.ndarray]:
    """One point per run, in run order (as the task's step-1 points): N, final D, mean general loss `L` of the
    last `last` checkpoints."""
    rows = [runs.rows_of(r) for r in runs.run_ids]
    return {
        "N": np.array([runs["N"][i[-1]] for i in rows]),
        "D": np.array([runs["D"][i[-1]] for i in rows]),
        "L": np.array([runs[column][i[-last:]].mean() for i in rows]),
    }
