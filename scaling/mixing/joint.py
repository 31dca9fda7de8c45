"""Joint mixture-scaling law: loss as a function of model size N, tokens D and training-domain shares r, fitted at once.

Form "additive" (the additive structure of Shukor et al. 2025's joint mixture-scaling laws, with Ye et al. 2024's
exponential mixing term), per loss column:
    L(N, D, r) = E + A / N^alpha + B / D^beta + k exp(sum_j t_j r_j)
with one alpha and one beta for every mixture (tied exponents, as Ye et al.'s `--tie_alpha`), so all runs of all
mixtures, sizes and checkpoints inform one fit. Shares sum to 1, so the last domain's t is pinned to 0. Intervals
are percentile bootstrap intervals over runs (all checkpoints of a run are drawn together).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ladderlab.errors import LadderlabError
from ladderlab.scaling.engine.bootstrap import bootstrap as bootstrap_fit
from ladderlab.scaling.engine.law import Data, FittedLaw, Law, Param, fit_law
from ladderlab.scaling.mixing.law import stack
from ladderlab.scaling.mixing.table import check_proportions
from ladderlab.scaling.tables.columns import read_json

FORM = "additive"
FORMULA = "L = E + A/N^alpha + B/D^beta + k exp(sum_j t_j r_j)"
RESERVED = ("N", "D")  # the law's size and token inputs: no domain may take these names
REFINE = 8  # grid starts refined by L-BFGS-B (time is linear in it); 4, 8, 16 find one optimum on a synthetic sweep


class MixtureScalingLaw(Law):
    """The additive joint law for one loss column; E, A, B, k fitted in log space, alpha, beta and t as values."""

    name = "mixture-scaling"
    positive = RESERVED

    def __init__(self, domains: Sequence[str]):
        clash = [d for d in domains if d in RESERVED]
        if clash:
            raise LadderlabError(f"mixture-scaling: share column {clash[0]!r} clashes with the law's input names N, D")
        if len(domains) < 2:
            raise LadderlabError(f"mixture-scaling: needs at least 2 share columns, got {list(domains)}")
        self.domains = tuple(domains)
        self.inputs = (*RESERVED, *self.domains)
        self.params = (
            Param("E", True, -10.0, 5.0, (-1.0, 0.0, 0.5)),
            Param("A", True, -20.0, 60.0, (0.0, 5.0, 10.0, 15.0)),
            Param("alpha", False, 0.0, 4.0, (0.25, 0.5, 1.0)),
            Param("B", True, -20.0, 60.0, (0.0, 5.0, 10.0, 15.0)),
            Param("beta", False, 0.0, 4.0, (0.25, 0.5, 1.0)),
            Param("k", True, -30.0, 10.0, (-3.0, -1.0)),
            *(Param(f"t_{d}", False, -100.0, 100.0, (0.0,)) for d in self.domains[:-1]),
        )

    def spec(self) -> dict[str, Any]:
        return {"domains": list(self.domains)}

    def predict_batch(self, theta_SxP: np.ndarray, x: Data) -> np.ndarray:
        e, a, alpha, b, beta, k = (theta_SxP[:, i : i + 1] for i in range(6))
        log_n, log_d = np.log(x["N"])[None, :], np.log(x["D"])[None, :]
        mixing_SxN = np.exp(k + theta_SxP[:, 6:] @ stack(x, self.domains)[:, :-1].T)
        return np.exp(e) + np.exp(a - alpha * log_n) + np.exp(b - beta * log_d) + mixing_SxN


@dataclass
class MixtureScaling:
    """Per loss column the fitted joint law (with bootstrap replicates), and where its data came from."""

    domains: tuple[str, ...]
    laws: dict[str, FittedLaw]
    columns: dict[str, str | None]  # "n", "d", "run": the runs table's columns
    n_runs: int
    warnings: list[str] = field(default_factory=list)

    def predict(self, r: Mapping[str, Any], n: float, d: float, level: float = 0.9) -> dict[str, tuple]:
        """Per loss column (prediction, lo, hi) at mixtures r (domain -> shares; a missing one is 0) of an N, D run."""
        unknown = sorted(set(r) - set(self.domains))
        if unknown:
            raise LadderlabError(f"unknown domain(s) {', '.join(unknown)} (the law knows: {', '.join(self.domains)})")
        size = len(np.atleast_1d(next(iter(r.values())))) if r else 1
        x = {"N": np.full(size, float(n)), "D": np.full(size, float(d)),
             **{dom: np.broadcast_to(np.asarray(r.get(dom, 0.0), float), (size,)) for dom in self.domains}}
        out = {}
        for col, fit in self.laws.items():
            pred = fit.predict(**x)
            lo, hi = fit.interval(level, **x) if fit.boot_BxP is not None else (np.full(size, np.nan),) * 2
            out[col] = (pred, lo, hi)
        return out

    def to_json(self) -> dict[str, Any]:
        return {"kind": "mixture-scaling", "form": FORM, "formula": FORMULA, "domains": list(self.domains),
                "columns": self.columns, "n_runs": self.n_runs, "warnings": self.warnings,
                "targets": {c: f.to_json() for c, f in self.laws.items()}}


def load_mixture_scaling(path: str | Path) -> MixtureScaling:
    """Rebuild a MixtureScaling from the JSON that `to_json` wrote."""

    def build(doc: dict[str, Any]) -> MixtureScaling:
        if doc.get("kind") != "mixture-scaling" or doc.get("form") != FORM:
            raise LadderlabError(f"{path}: not a mixture-scaling JSON of form {FORM!r} (kind {doc.get('kind')!r})")
        law = MixtureScalingLaw(doc["domains"])
        laws = {c: FittedLaw.from_json(law, t) for c, t in doc["targets"].items()}
        return MixtureScaling(law.domains, laws, dict(doc["columns"]), int(doc["n_runs"]), list(doc["warnings"]))

    return read_json(path, "mixture-scaling", build)


def run_groups(shares: Mapping[str, np.ndarray], n: np.ndarray, runs: np.ndarray | None = None) -> np.ndarray:
    """Run index of every row: by the run ids when given, else rows with the same shares and N are one run."""
    if runs is not None:
        return np.unique(np.asarray(runs).astype(str), return_inverse=True)[1]
    key = np.column_stack([*(np.round(np.asarray(v, float), 9) for v in shares.values()), np.asarray(n, float)])
    return np.unique(key, axis=0, return_inverse=True)[1].ravel()


def fit_mixture_scaling(
    shares: Mapping[str, np.ndarray],
    n: np.ndarray,
    d: np.ndarray,
    losses: Mapping[str, np.ndarray],
    runs: np.ndarray | None = None,
    bootstrap: int = 200,
    seed: int = 0,
    source: str = "runs",
    columns: Mapping[str, str | None] | None = None,
    first_line: int = 0,
) -> MixtureScaling:
    """Fit the joint law to every loss column over all rows (checkpoints) at once; bootstrap resamples whole runs.

    `source` and `first_line` name the table and its first data row's line in errors (a bad shares row)."""
    check_proportions(shares, source, first_line)
    law = MixtureScalingLaw(list(shares))
    groups = run_groups(shares, n, runs)
    x = {"N": np.asarray(n, float), "D": np.asarray(d, float), **{k: np.asarray(v, float) for k, v in shares.items()}}
    laws = {}
    for col, y in losses.items():
        try:
            fitted = fit_law(law, x, np.asarray(y, float), n_refine=REFINE)
        except LadderlabError as e:
            raise LadderlabError(f"{source}, column {col}: {e}") from None
        if bootstrap > 0:
            fitted = bootstrap_fit(fitted, x, y, n=bootstrap, seed=seed, groups=groups, warm=True)
        laws[col] = fitted
    n_runs = int(groups.max()) + 1
    warnings = [f"{c}: {w}" for c, f in laws.items() for w in f.warnings]
    if bootstrap > 0 and n_runs < 10:
        warnings.append(f"only {n_runs} runs: bootstrap intervals over runs are rough")
    return MixtureScaling(law.domains, laws, dict(columns or {"n": "N", "d": "D", "run": None}), n_runs, warnings)
