"""One-variable power laws L(x) = E + A/x^alpha: the step law L(S), size law L(N) and compute law L(C)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ladderlab.scaling.engine.law import Data, Law, Param

_NAMES = {"step": ("S", "B", "beta"), "size": ("N", "A", "alpha"), "compute": ("C", "A", "alpha")}


class PowerLaw(Law):
    """L(x) = E + A/x^alpha, fitted as LSE(a - alpha log x, e) with Huber on log residuals."""

    residual = "log"

    def __init__(self, kind: str):
        if kind not in _NAMES:
            raise ValueError(f"unknown power law {kind!r} (known: {', '.join(_NAMES)})")
        var, coef, exp = _NAMES[kind]
        self.kind = kind
        self.name = kind
        self.inputs = (var,)
        self.params = (
            Param("E", True, -10.0, 5.0, (-1.0, -0.5, 0.0, 0.5, 1.0)),
            Param(coef, True, -20.0, 80.0, (0.0, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0)),
            Param(exp, False, 0.0, 4.0, (0.0, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0)),
        )

    def spec(self) -> dict[str, Any]:
        return {"kind": self.kind}

    def predict_batch(self, theta_SxP: np.ndarray, x: Data) -> np.ndarray:
        e, a, alpha = (theta_SxP[:, i : i + 1] for i in range(3))
        return np.exp(e) + np.exp(a - alpha * np.log(x[self.inputs[0]])[None, :])
