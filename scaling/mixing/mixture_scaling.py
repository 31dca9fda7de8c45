"""Mixture-scaling laws: a large run's loss for any mixture from small runs, in the form a backtest picks.

Two forms, one for all loss columns: "joint", the additive law of (N, D, shares) fitted to every checkpoint at once
(scaling.mixing.joint), and "nested", Ye et al.'s step law -> size law -> mixing law (scaling.mixing.nested).
`fit_mixture_scaling` holds the largest size out, fits both forms on the smaller sizes, scores both on the held-out
runs' last checkpoints (MAPE, coverage of the 90% intervals from up to 50 draws, Spearman over mixtures), picks the
lower mean MAPE (a tie goes to joint, the simpler form) and refits the chosen form on every run (joint: with the
backtest's optimum among its starts). The nested size law needs 4 sizes: with exactly 4 (none to spare), the
largest size's runs are fitted on their first half of checkpoints instead and scored at their last, so both forms
are still compared on the largest runs; with fewer, joint is chosen and the choice says why. Intervals are for one
new run: the law's draws plus a run's own scatter about it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from scipy.stats import spearmanr

from ladderlab.errors import LadderlabError
from ladderlab.scaling.engine.law import FittedLaw, percentile_interval
from ladderlab.scaling.mixing.joint import (FORMULA, JointAt, MixtureScalingLaw, fit_joint, joint_from_json,
                                            run_groups, run_scatter)
from ladderlab.scaling.mixing.law import stack
from ladderlab.scaling.mixing.nested import MIN_POINTS, Nested, NestedAt, Runs, fit_steps, problem, runs_of
from ladderlab.scaling.mixing.separation import separation
from ladderlab.scaling.mixing.table import check_proportions
from ladderlab.scaling.tables.columns import read_json

FORMS = ("joint", "nested")
FORMULAS = {"joint": FORMULA, "nested": "step law L(D) per run -> size law L(N) per mixture -> mixing law L(r)"}
LEVEL = 0.9
MIN_SIZES = 3  # a backtest needs two sizes to fit and one to hold out
BACKTEST_DRAWS = 50  # bootstrap replicates / error draws behind the backtest's coverage (at most --bootstrap)
At = JointAt | NestedAt


@dataclass
class MixtureScaling:
    """The chosen form fitted to every run, the backtest that chose it, and the fitted runs' distinct mixtures."""

    form: str
    domains: tuple[str, ...]
    mixtures: np.ndarray  # distinct mixtures of the fitted runs x domains
    columns: dict[str, str | None]  # "n", "d", "run": the runs table's columns
    n_runs: int
    choice: dict[str, Any]
    warnings: list[str]
    draws: int
    seed: int
    joint: dict[str, FittedLaw] | None = None
    scatter: dict[str, np.ndarray] | None = None  # joint: per column the fitted runs' log residuals (run_scatter)
    nested: Nested | None = None

    @property
    def targets(self) -> list[str]:
        """The fitted loss columns."""
        return list(self.joint if self.form == "joint" else self.nested.steps)

    @property
    def share_max(self) -> dict[str, float]:
        return {d: float(v) for d, v in zip(self.domains, self.mixtures.max(axis=0))}

    def at(self, n: float, d: float) -> At:
        """The law at one run's size N and tokens D: point predictions and draws for mixtures (rows of shares)."""
        if self.form == "joint":
            return JointAt(self.joint, self.domains, float(n), float(d), self.scatter, self.seed)
        return self.nested.at(float(n), float(d), self.draws, self.seed)

    def to_json(self) -> dict[str, Any]:
        doc = {"kind": "mixture-scaling", "form": self.form, "formula": FORMULAS[self.form],
               "domains": list(self.domains), "mixtures": self.mixtures.tolist(), "columns": self.columns,
               "n_runs": self.n_runs, "draws": self.draws, "seed": self.seed, "choice": self.choice,
               "warnings": self.warnings}
        if self.form == "joint":
            return {**doc, "targets": {c: f.to_json() for c, f in self.joint.items()},
                    "scatter": {c: v.tolist() for c, v in self.scatter.items()}}
        return {**doc, "nested": self.nested.to_json()}


def load_mixture_scaling(path: str | Path) -> MixtureScaling:
    """Rebuild a MixtureScaling from the JSON that `to_json` wrote."""

    def build(doc: dict[str, Any]) -> MixtureScaling:
        if doc.get("kind") != "mixture-scaling" or doc.get("form") not in FORMS:
            raise LadderlabError(f"{path}: not a mixture-scaling JSON of form {' or '.join(FORMS)} (kind "
                                 f"{doc.get('kind')!r}, form {doc.get('form')!r}); refit with `fit mixture-scaling`")
        domains = tuple(doc["domains"])
        if doc["form"] == "joint" and "scatter" not in doc:
            raise LadderlabError(f"{path}: a joint law without its runs' scatter (written before its intervals were "
                                 "for a new run); refit with `fit mixture-scaling`")
        joint = joint_from_json(domains, doc["targets"]) if doc["form"] == "joint" else None
        scatter = {c: np.array(v, float) for c, v in doc["scatter"].items()} if doc["form"] == "joint" else None
        nested = Nested.from_json(domains, doc["nested"]) if doc["form"] == "nested" else None
        return MixtureScaling(doc["form"], domains, np.array(doc["mixtures"], float), dict(doc["columns"]),
                              int(doc["n_runs"]), doc["choice"], list(doc["warnings"]), int(doc["draws"]),
                              int(doc["seed"]), joint, scatter, nested)

    return read_json(path, "mixture-scaling", build)


def predict_at(at: At, r_NxM: np.ndarray, level: float = LEVEL) -> dict[str, tuple[np.ndarray, ...]]:
    """Per loss column (prediction, lo, hi, draws or None) at the mixtures r (rows of shares in domain order):
    lo and hi bound one new run's loss (the law's draws times a run's own scatter about it); the draws are the law's
    alone (what the separation verdicts judge)."""
    draws = at.draws(r_NxM)
    noise = None if draws is None else at.run_noise(r_NxM, len(next(iter(draws.values()))))
    out = {}
    for col, pred in at.point(r_NxM).items():
        if draws is None:
            out[col] = (pred, np.full(len(pred), np.nan), np.full(len(pred), np.nan), None)
        else:
            out[col] = (pred, *percentile_interval(draws[col] * np.exp(noise[col]), level), draws[col])
    return out


def score(pred: np.ndarray, lo: np.ndarray, hi: np.ndarray, actual: np.ndarray) -> dict[str, float | None]:
    """Held-out MAPE (%), coverage of the intervals (None without them) and Spearman of predicted vs actual."""
    rho = float(spearmanr(pred, actual)[0]) if len(actual) > 2 and np.ptp(actual) > 0 else None
    coverage = None if np.isnan(lo).all() else float(np.mean((lo <= actual) & (actual <= hi)))
    return {"mape": float(np.mean(np.abs(pred - actual) / actual) * 100), "coverage_90": coverage, "spearman": rho}


def _summary(per_column: dict[str, dict[str, Any]]) -> dict[str, Any]:
    covered = [s["coverage_90"] for s in per_column.values() if s["coverage_90"] is not None]
    return {"mape": float(np.mean([s["mape"] for s in per_column.values()])),
            "coverage_90": float(np.mean(covered)) if covered else None, "columns": per_column}


def held_out_predictions(form_at: Any, targets: np.ndarray, r_HxM: np.ndarray, columns: Sequence[str]) -> tuple:
    """Per loss column the held-out runs' predictions, interval bounds and draws (draws x runs; absent without
    draws): `form_at(D)` gives the form at the held-out size and tokens D; each run is predicted at its own D."""
    h = len(targets)
    pred = {c: np.empty(h) for c in columns}
    lo, hi = ({c: np.full(h, np.nan) for c in columns} for _ in range(2))
    draws: dict[str, np.ndarray] = {}
    for d in np.unique(targets):
        rows = targets == d
        for col, (p, a, b, dr) in predict_at(form_at(d), r_HxM[rows]).items():
            pred[col][rows], lo[col][rows], hi[col][rows] = p, a, b
            if dr is not None:
                draws.setdefault(col, np.full((len(dr), h), np.nan))[:, rows] = dr
    return pred, lo, hi, draws


def _backtest(form_at: Any, targets: np.ndarray, r_HxM: np.ndarray, actual: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """A form's held-out scores: `form_at(D)` gives it at the held-out size and tokens D; each held-out run is
    predicted at its own last checkpoint."""
    pred, lo, hi, draws = held_out_predictions(form_at, targets, r_HxM, list(actual))
    separated = {}
    for d in np.unique(targets):
        rows = targets == d
        for col, dr in draws.items():
            if rows.sum() > 1:
                apart = separation(np.flatnonzero(rows).astype(str), pred[col][rows], dr[:, rows])["separated"]
                separated[col] = separated.get(col, True) and apart
    per_column = {c: {**score(pred[c], lo[c], hi[c], actual[c]), "mixtures_separated": separated.get(c)}
                  for c in actual}
    return _summary(per_column)


def _kept_checkpoints(idx: np.ndarray, d: np.ndarray) -> np.ndarray | None:
    """The rows of a largest-size run that the checkpoint split fits: its first half of distinct checkpoints (at
    least MIN_POINTS, for its step law); None when that leaves none to hold out."""
    steps = np.unique(d[idx])
    keep = max(MIN_POINTS, int(np.ceil(len(steps) / 2)))
    return idx[d[idx] <= steps[keep - 1]] if keep < len(steps) else None


def _split(table: Runs, rows: list[np.ndarray], d: np.ndarray) -> tuple[list[np.ndarray], dict[str, Any]]:
    """The backtest's fitted rows per run (empty: run held out) and its record. The largest size is held out when
    the nested pipeline can be fitted without it (or not at all); otherwise (4 sizes) the largest size's runs are
    fitted on their first half of checkpoints, so both forms are fitted on every size and scored on how they carry
    the largest runs to their ends."""
    sizes = np.unique(table.size)
    top = table.size == sizes[-1]
    held = {"N": float(sizes[-1]), "runs": int(top.sum())}
    if problem(table.subset(~top)) is not None and problem(table) is None:
        kept = [_kept_checkpoints(idx, d) if t else idx for idx, t in zip(rows, top)]
        if all(k is not None for k in kept):
            return kept, {"split": "largest size's last checkpoints", **held, "fitted_sizes": sizes.tolist(),
                          "scored": "each run's last checkpoint; these runs fitted on their first half of "
                                    f"checkpoints, at least {MIN_POINTS}"}
    return ([idx[:0] if t else idx for idx, t in zip(rows, top)],
            {"split": "largest size", **held, "fitted_sizes": sizes[:-1].tolist(),
             "scored": "each held-out run's last checkpoint"})


def _choose(x: dict[str, np.ndarray], y: dict[str, np.ndarray], domains: tuple[str, ...], table: Runs,
            rows: list[np.ndarray], groups: np.ndarray, bootstrap: int, seed: int, source: str) -> tuple:
    """The backtest: (chosen form, the choice's record, the joint fits of the backtest or None)."""
    sizes = np.unique(table.size)
    choice: dict[str, Any] = {"held_out": None, "errors": {"joint": None, "nested": None}}
    if len(sizes) < MIN_SIZES:
        choice["reason"] = f"only {len(sizes)} model sizes: none to hold out (a backtest needs {MIN_SIZES})"
        return "joint", choice, None
    kept, choice["held_out"] = _split(table, rows, x["D"])
    fitted = np.array([len(k) > 0 for k in kept])
    fit_table = Runs(table.shares, table.mixture[fitted], table.size[fitted], [x["D"][k] for k in kept if len(k)])
    fit_rows = [k for k in kept if len(k)]
    train = np.concatenate(fit_rows)
    last = np.array([idx[np.argmax(x["D"][idx])] for idx, n in zip(rows, table.size) if n == sizes[-1]])
    r_held, actual = stack(x, domains)[last], {c: v[last] for c, v in y.items()}
    draws = min(bootstrap, BACKTEST_DRAWS)
    x_fit, y_fit = {k: v[train] for k, v in x.items()}, {c: v[train] for c, v in y.items()}
    joint = fit_joint(x_fit, y_fit, groups[train], draws, seed, f"{source} (backtest: {choice['held_out']['split']} "
                      "held out)")
    scatter = run_scatter(joint, x_fit, y_fit, groups[train])
    choice["errors"]["joint"] = _backtest(lambda t: JointAt(joint, domains, sizes[-1], t, scatter, seed),
                                          x["D"][last], r_held, actual)
    reason = problem(fit_table)
    if reason is None:
        try:
            offsets = np.cumsum([0, *map(len, fit_rows)])[:-1]  # each fitted run's rows within the fitted rows
            nested = Nested(fit_table, domains, {c: fit_steps(fit_table, [o + np.arange(len(k)) for o, k in
                                                                          zip(offsets, fit_rows)], v, f"column {c}")
                                                 for c, v in y_fit.items()})
            choice["errors"]["nested"] = _backtest(lambda t: nested.at(sizes[-1], t, draws, seed), x["D"][last],
                                                   r_held, actual)
        except LadderlabError as e:
            reason = str(e)
    if reason is not None:
        choice["reason"] = f"nested form not backtested: with the {choice['held_out']['split']} held out, {reason}"
        return "joint", choice, joint
    mape = {f: choice["errors"][f]["mape"] for f in FORMS}
    choice["reason"] = f"held-out MAPE {mape['joint']:.3g}% (joint) vs {mape['nested']:.3g}% (nested)"
    return ("nested" if mape["nested"] < mape["joint"] else "joint"), choice, joint


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
    """Fit the joint and nested forms with the largest size held out, choose by held-out MAPE, refit the chosen
    form on every run. `bootstrap`: bootstrap replicates (joint) or error draws (nested) for the intervals.

    `source` and `first_line` name the table and its first data row's line in errors (a bad shares row)."""
    check_proportions(shares, source, first_line)
    domains = MixtureScalingLaw(list(shares)).domains  # checks the share columns' names
    x = {"N": np.asarray(n, float), "D": np.asarray(d, float), **{k: np.asarray(v, float) for k, v in shares.items()}}
    y = {c: np.asarray(v, float) for c, v in losses.items()}
    groups = run_groups(shares, x["N"], runs)
    table, rows = runs_of(stack(x, domains), x["N"], x["D"], groups)
    form, choice, joint = _choose(x, y, domains, table, rows, groups, bootstrap, seed, source)
    warnings, fitted, scatter, nested = [], None, None, None
    if form == "joint":
        fitted = fit_joint(x, y, groups, bootstrap, seed, source, near=joint)
        scatter = run_scatter(fitted, x, y, groups)
        warnings += [f"{c}: {w}" for c, f in fitted.items() for w in f.warnings]
    else:
        nested = Nested(table, domains, {c: fit_steps(table, rows, v, f"column {c}") for c, v in y.items()})
        warnings += [f"{c}: step law: {w}" for c, s in nested.steps.items() for f in s for w in f.warnings
                     if "few points" not in w]
    n_runs = len(table.size)
    if bootstrap > 0 and n_runs < 10:
        warnings.append(f"only {n_runs} runs: intervals are rough")
    return MixtureScaling(form, domains, table.shares, dict(columns or {"n": "N", "d": "D", "run": None}), n_runs,
                          choice, warnings, bootstrap, seed, fitted, scatter, nested)
