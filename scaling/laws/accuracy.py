"""Sigmoid accuracy law Acc(L) = a / (1 + exp(-k (L - L0))) + b (OLMo ladder step 2), fitted by least squares."""

from __future__ import annotations

import numpy as np

from ladderlab.scaling.engine.law import Data, Law, Param


class SigmoidAccuracy(Law):
    """Accuracy falls from b + a... to b as task loss L grows; a in [-1, 0], b in [0, 1], k, L0 >= 0."""

    name = "accuracy"
    inputs = ("L",)
    positive = ()  # the anchor point (L=0, Acc=1) is a valid input
    residual = "raw"
    loss = "l2"
    params = (
        Param("a", False, -1.0, 0.0, (-1.0, -0.75, -0.5, -0.25)),
        Param("b", False, 0.0, 1.0, (0.25, 0.5, 0.75, 1.0)),
        Param("k", False, 0.0, 100.0, (0.5, 1.0, 2.0, 5.0, 10.0, 20.0)),
        Param("L0", False, 0.0, 20.0, (0.25, 0.5, 1.0, 1.5, 2.0, 3.0)),
    )

    def predict_batch(self, theta_SxP: np.ndarray, x: Data) -> np.ndarray:
        a, b, k, l0 = (theta_SxP[:, i : i + 1] for i in range(4))
        return a / (1.0 + np.exp(-k * (x["L"][None, :] - l0))) + b
