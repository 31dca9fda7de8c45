"""Fit any law with optional bootstrap, and rebuild a fitted law from its JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ladderlab.errors import LadderlabError
from ladderlab.scaling.accuracy import SigmoidAccuracy
from ladderlab.scaling.annealing import Annealing
from ladderlab.scaling.bootstrap import bootstrap as _bootstrap
from ladderlab.scaling.chinchilla import Chinchilla
from ladderlab.scaling.data_constrained import DataConstrained
from ladderlab.scaling.law import Data, FittedLaw, Law, fit_law
from ladderlab.scaling.power import PowerLaw

LAWS = {
    "chinchilla": Chinchilla,
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


def load_fitted(path: str | Path) -> FittedLaw:
    """Rebuild a FittedLaw (parameters, diagnostics, bootstrap replicates) from the JSON that `save` wrote."""
    try:
        doc = json.loads(Path(path).read_text())
        law = make_law(doc["law"], doc.get("spec"))
        theta = law.to_internal(doc["params"])
        boot = doc.get("bootstrap")
        samples = None if boot is None else np.array([law.to_internal(s) for s in boot["samples"]])
        return FittedLaw(
            law, theta, doc["objective"], doc["n_points"], doc["rmse_log"], doc["mape"],
            list(doc.get("warnings", [])), samples, None if boot is None else boot.get("seed"),
            tuple(doc.get("fixed", ())),
        )
    except FileNotFoundError:
        raise LadderlabError(f"{path}: file not found") from None
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise LadderlabError(f"{path}: not a ladderlab law JSON ({type(e).__name__}: {e})") from None
