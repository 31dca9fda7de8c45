"""Fit any law with optional bootstrap, judge its predictions against the backtests, and rebuild it from JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ladderlab.errors import LadderlabError
from ladderlab.scaling.engine.bootstrap import bootstrap as _bootstrap
from ladderlab.scaling.engine.law import Data, FittedLaw, Law, fit_law
from ladderlab.scaling.laws.accuracy import SigmoidAccuracy
from ladderlab.scaling.laws.annealing import Annealing
from ladderlab.scaling.laws.chinchilla import Chinchilla
from ladderlab.scaling.laws.data_constrained import DataConstrained
from ladderlab.scaling.laws.kaplan import Kaplan
from ladderlab.scaling.laws.power import PowerLaw
from ladderlab.scaling.tables.columns import read_json

LAWS = {
    "chinchilla": Chinchilla,
    "kaplan": Kaplan,
    "data-constrained": DataConstrained,
    "step": lambda: PowerLaw("step"),
    "size": lambda: PowerLaw("size"),
    "compute": lambda: PowerLaw("compute"),
    "accuracy": SigmoidAccuracy,
    "annealing": Annealing,
}


def make_law(name: str, spec: Mapping[str, Any] | None = None) -> Law:
    """The law registered under `name`, built with its JSON spec."""
    if name not in LAWS:
        raise LadderlabError(f"unknown law {name!r} (known: {', '.join(LAWS)})")
    if name in ("step", "size", "compute"):
        return PowerLaw(name)
    return LAWS[name](**dict(spec or {}))


def fit(
    law: Law | str,
    x: Data,
    y: np.ndarray,
    *,
    fixed: Mapping[str, float] | None = None,
    bootstrap: int = 0,
    seed: int = 0,
    groups: np.ndarray | None = None,
    workers: int | None = None,
) -> FittedLaw:
    """Fit a law (object or registered name) to y at inputs x; with bootstrap > 0, attach that many replicates."""
    law = make_law(law) if isinstance(law, str) else law
    fitted = fit_law(law, x, y, fixed)
    if bootstrap > 0:
        _bootstrap(fitted, x, y, n=bootstrap, seed=seed, groups=groups, fixed=fixed, workers=workers)
    return fitted


def judge(fitted: FittedLaw, x: Data, y: np.ndarray, points: Sequence[Mapping[str, float]]) -> list[dict[str, Any]]:
    """Each point's prediction with its bootstrap interval (if any), ratio past the fitted runs x, calibrated 90%
    interval (chinchilla, kaplan and data-constrained laws on at least 3 sizes) and verdict."""
    from ladderlab.scaling import report
    from ladderlab.scaling.backtest.harness import self_check_scale

    method = fitted.law.name if fitted.law.name in ("chinchilla", "kaplan", "data-constrained") else None
    scale = None if method is None else self_check_scale(method, {k: np.asarray(v, float) for k, v in x.items()},
                                                         np.asarray(y, float), fitted)
    return report.predictions_rows(fitted, [dict(p) for p in points], report.fit_info(dict(x), scale))


def load_fitted(path: str | Path) -> FittedLaw:
    """Rebuild a FittedLaw (parameters, diagnostics, bootstrap replicates) from the JSON that `save` wrote."""
    return read_json(path, "ladderlab law", lambda doc: FittedLaw.from_json(make_law(doc["law"], doc.get("spec")), doc))
