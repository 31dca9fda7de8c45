"""The mixture x scale backtest: the joint law, the nested pipeline (with each stage's error) and the form
`fit mixture-scaling` picks, fitted on the sizes below the largest and scored on the largest size's runs at their last
checkpoint: MAPE and 90% coverage over runs and loss columns, the Spearman of the mixtures' order, and whether the
predicted mixtures are told apart there (the separation verdict of `predict mixture-loss`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
from threadpoolctl import threadpool_limits

from ladderlab.scaling.backtest.sets import MixtureSet
from ladderlab.scaling.mixing.joint import JointAt, fit_joint, run_groups, run_scatter
from ladderlab.scaling.mixing.law import stack
from ladderlab.scaling.mixing.mixture_scaling import At, fit_mixture_scaling, held_out_predictions, score
from ladderlab.scaling.mixing.nested import MIN_POINTS, STEP, Nested, NestedAt, Runs, fit_power, fit_steps, runs_of
from ladderlab.scaling.mixing.separation import separation, separation_text


@dataclass(frozen=True)
class Held:
    """The largest size's runs at their last checkpoint: shares (runs x domains), tokens, names and losses."""

    n: float
    r: np.ndarray
    d: np.ndarray
    ids: np.ndarray
    actual: dict[str, np.ndarray]


def mixture_backtest(s: MixtureSet, draws: int = 50, seed: int = 0) -> dict[str, dict[str, Any]]:
    """{method: metrics} of a mixture set: mixture-scaling:joint, :nested (with `stages`: the step, size and final
    stages' MAPE) and :chosen (with the `form` that `fit mixture-scaling` picks on the fitted sizes, and the `split`
    its own backtest used). `draws`: bootstrap replicates (joint) and propagated error draws (nested) behind the
    intervals (with a new run's scatter) and the verdict."""
    domains = tuple(s.shares)
    x = {"N": s.n, "D": s.d, **s.shares}
    r_all, groups, top = stack(x, domains), run_groups(s.shares, s.n, s.runs), float(s.n.max())
    fit = s.n < top
    table, rows = runs_of(r_all, s.n, s.d, groups)
    last = np.array([idx[np.argmax(s.d[idx])] for idx, n in zip(rows, table.size) if n == top])
    held = Held(top, r_all[last], s.d[last], s.ids[last].astype(str), {c: v[last] for c, v in s.losses.items()})
    y_fit = {c: v[fit] for c, v in s.losses.items()}
    with threadpool_limits(1):
        x_fit = {k: v[fit] for k, v in x.items()}
        joint = fit_joint(x_fit, y_fit, groups[fit], draws, seed, f"{s.source} (largest size held out)")
        scatter = run_scatter(joint, x_fit, y_fit, groups[fit])
        fit_table, fit_rows = runs_of(r_all[fit], s.n[fit], s.d[fit], groups[fit])
        nested = Nested(fit_table, domains, {c: fit_steps(fit_table, fit_rows, v, c) for c, v in y_fit.items()})
        nested_at = {d: nested.at(top, d, draws, seed) for d in np.unique(held.d)}
        chosen = fit_mixture_scaling({k: v[fit] for k, v in s.shares.items()}, s.n[fit], s.d[fit], y_fit,
                                     None if s.runs is None else s.runs[fit], draws, seed, s.source)
        nested_row = _scores(nested_at.__getitem__, held)
        step_mape, step_scored = _step_mape(s, table, rows, top)
        stages = {"step_mape": step_mape, "step_scored": step_scored, "size_mape": _size_mape(nested_at, held),
                  "final_mape": nested_row["mape"]}
        return {"mixture-scaling:joint": _scores(lambda d: JointAt(joint, domains, top, d, scatter, seed), held),
                "mixture-scaling:nested": {**nested_row, "stages": stages},
                "mixture-scaling:chosen": {**_scores(lambda d: chosen.at(top, d), held), "form": chosen.form,
                                           "reason": chosen.choice["reason"],
                                           "split": (chosen.choice["held_out"] or {}).get("split")}}


def _scores(at_of: Callable[[float], At], held: Held) -> dict[str, Any]:
    """A form's held-out scores per loss column and averaged over them, and the separation verdict per column."""
    h = len(held.d)
    pred, lo, hi, draws = held_out_predictions(at_of, held.d, held.r, list(held.actual))
    columns, verdicts = {}, []
    for col, actual in held.actual.items():
        sep = separation(held.ids, pred[col], draws[col]) if col in draws else None
        width = float(np.mean((hi[col] - lo[col]) / actual) * 100) if col in draws else None
        columns[col] = {**score(pred[col], lo[col], hi[col], actual), "width_90_pct": width,
                        "separated": None if sep is None else sep["separated"],
                        "best": None if sep is None else sep["best"], "close": None if sep is None else sep["close"]}
        text = None if sep is None else separation_text(col, sep, f"N={held.n:.4g}")
        verdicts += [text] if text else []
    covered = [c["coverage_90"] for c in columns.values() if c["coverage_90"] is not None]
    separated = [c["separated"] for c in columns.values() if c["separated"] is not None]
    has = bool(covered)
    return {"mape": float(np.mean([c["mape"] for c in columns.values()])),
            "coverage_90": float(np.mean(covered)) if has else None,
            "width_90_pct": float(np.mean([c["width_90_pct"] for c in columns.values()])) if has else None,
            "n_targets": h * len(columns),
            "spearman": float(np.mean([c["spearman"] for c in columns.values() if c["spearman"] is not None])),
            "separated": all(separated) if separated else None, "verdicts": verdicts, "columns": columns}


def _step_mape(s: MixtureSet, table: Runs, rows: list[np.ndarray], top: float) -> tuple[float, str]:
    """The step stage's MAPE (%) and what it scored: each held-out run's step law fitted on its checkpoints within
    the fitted runs' tokens, predicting its last checkpoint; without MIN_POINTS such checkpoints, each fitted run's
    step law without its last checkpoint, predicting it."""
    reach = float(s.d[s.n < top].max())
    ordered = [(idx[np.argsort(s.d[idx])], n == top) for idx, n in zip(rows, table.size)]
    pairs = [(o[(s.d[o] <= reach) & (s.d[o] < s.d[o[-1]])], o[-1]) for o, h in ordered if h]
    scored = f"largest size's runs, fitted on their checkpoints up to D={reach:.4g}"
    if any(len(np.unique(s.d[f])) < MIN_POINTS for f, _ in pairs):
        pairs = [(o[:-1], o[-1]) for o, h in ordered if not h]
        scored = "fitted runs, each without its last checkpoint"
    err = [abs(fit_power(STEP, s.d[f], y[f]).predict(S=s.d[t])[0] / y[t] - 1)
           for y in s.losses.values() for f, t in pairs]
    return float(np.mean(err) * 100), scored


def _size_mape(nested_at: dict[float, NestedAt], held: Held) -> float:
    """The size stage's MAPE (%): each mixture's size law (on its step laws' losses at the held-out tokens) at the
    held-out size against the actual loss, for the held-out runs whose mixture was fitted."""
    err = []
    for i, (r, d) in enumerate(zip(held.r, held.d)):
        at = nested_at[d]
        fitted = np.column_stack(list(at.fitted_shares.values()))
        match = np.flatnonzero(np.all(np.isclose(fitted, r, atol=1e-6), axis=1))
        err += [abs(at.extrapolated[c][match[0]] / a[i] - 1) for c, a in held.actual.items() if len(match)]
    return float(np.mean(err) * 100)
