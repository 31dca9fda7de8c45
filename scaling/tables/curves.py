"""Loss curves with their learning-rate schedules, for the schedule-aware laws: from our runs table or OLMo CSVs.

A curve is one run's logged (step, loss) pairs plus the (step, rate) pairs of its whole schedule. A continued run
(a CPT phase, whose `base_run` names the run it continues; or a decay branch of a constant-rate run) carries its
parent's schedule before its own: its steps count from the parent's start, and `start` is the step it branched at.
Rates between logged rows are interpolated linearly (see `annealing.dense_schedule`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ladderlab.errors import LadderlabError
from ladderlab.scaling.tables.olmo import read_olmo_ladder
from ladderlab.scaling.tables.runs import Runs, read_runs, select_ladder


@dataclass(frozen=True)
class Curve:
    """One run's losses along its schedule; `start` > 0 for a run that continues another from that step."""

    run: str
    n: float
    steps: np.ndarray
    loss: np.ndarray
    lr_steps: np.ndarray
    lr: np.ndarray
    start: int = 0
    ratio: float = 0.0  # a CPT phase's domain share (0: the pre-training mixture)
    tokens_per_step: float = float("nan")

    @property
    def last(self) -> int:
        return int(self.steps.max())


def _column(runs: Runs, name: str) -> np.ndarray:
    if name not in runs.cols:
        numeric = [c for c in runs.cols if c.startswith("val/")] + [c for c in runs.cols if c.startswith("loss")]
        raise LadderlabError(f"{runs.source}: no loss column {name!r} (has e.g. {', '.join(numeric[:6])})")
    return runs[name]


def curves_from_runs(runs: Runs, loss: str, ratio: str | None = None) -> list[Curve]:
    """Curves of a runs table (run, N, step, lr, the loss column; `ratio` names a CPT phases' domain-share column).
    A row with a `base_run` continues that run from its last step: its step is counted from there."""
    for col in ("step", "lr"):
        if col not in runs.cols:
            raise LadderlabError(f"{runs.source}: a loss curve needs column {col!r} (the step and its learning rate)")
    y = _column(runs, loss)
    share = None if ratio is None else _column(runs, ratio)
    own = {run: runs.rows_of(run) for run in runs.run_ids}  # each run's rows in order of tokens, so of steps
    base = runs.cols.get("base_run", np.full(len(runs), "", object))
    curves: dict[str, Curve] = {}

    def build(run: str, seen: tuple[str, ...] = ()) -> Curve:
        if run in curves:
            return curves[run]
        if run in seen:
            raise LadderlabError(f"{runs.source}: base_run cycle through run {run!r}")
        idx = own[run]
        parent_id = str(base[idx[0]])
        steps, lr = runs["step"][idx], runs["lr"][idx]
        if parent_id:
            if parent_id not in own:
                raise LadderlabError(f"{runs.source}: run {run!r} continues base_run {parent_id!r}, which is not in the table")
            parent = build(parent_id, (*seen, run))
            start = parent.last
            lr_steps = np.concatenate([parent.lr_steps[parent.lr_steps <= start], start + steps])
            lr_all = np.concatenate([parent.lr[parent.lr_steps <= start], lr])
            steps = start + steps
        else:
            start, lr_steps, lr_all = 0, steps, lr
        bad = ~np.isfinite(lr_all)
        if bad.any():
            raise LadderlabError(f"{runs.source}: run {run!r} has no learning rate at step {lr_steps[bad][0]:g}")
        d, s = runs["D"][idx], runs["step"][idx]
        per_step = float((d[-1] - d[0]) / (s[-1] - s[0])) if s[-1] > s[0] else float(d[-1] / max(s[-1], 1))
        curve = Curve(run, float(runs["N"][idx[0]]), steps, y[idx], lr_steps, lr_all, start,
                      0.0 if share is None or not parent_id else float(share[idx[0]]), per_step)
        curves[run] = curve
        return curve

    return [build(run) for run in runs.run_ids]


def curves_from_olmo(folder: str | Path, loss: str, branches: str | Path | None = None,
                     sizes: Sequence[str] | None = None) -> list[Curve]:
    """Curves of OLMo-style SIZE-KxC.csv files with a learning-rate column; each file in `branches` is a decay
    branch of the run of the same size in `folder`, starting where its log starts (its id ends in -decay)."""
    runs = read_olmo_ladder(folder, sizes=sizes)
    main = curves_from_runs(runs, loss)
    if branches is None:
        return main
    by_size = {}
    for curve in main:
        by_size.setdefault(str(runs["size"][runs.rows_of(curve.run)[0]]), curve)
    out = list(main)
    decay = read_olmo_ladder(branches, sizes=sizes)
    for curve in curves_from_runs(decay, loss):
        size = str(decay["size"][decay.rows_of(curve.run)[0]])
        if size not in by_size:
            raise LadderlabError(f"{branches}: branch {curve.run} has no run of size {size} in {folder}")
        parent = by_size[size]
        first = int(curve.steps.min())
        keep = parent.lr_steps < first
        out.append(Curve(f"{curve.run}-decay", curve.n, curve.steps, curve.loss,
                         np.concatenate([parent.lr_steps[keep], curve.lr_steps]),
                         np.concatenate([parent.lr[keep], curve.lr]), first, 0.0, curve.tokens_per_step))
    return out


def read_curves(path: str | Path, loss: str, branches: str | Path | None = None, ratio: str | None = None,
                sizes: Sequence[str] | None = None) -> list[Curve]:
    """Curves from a runs table (a CSV, or a folder holding runs.csv) or a folder of OLMo SIZE-KxC.csv files."""
    path = Path(path)
    if path.is_dir() and not (path / "runs.csv").is_file():
        return curves_from_olmo(path, loss, branches, sizes)
    if branches is not None:
        raise LadderlabError(f"{path}: --branches takes OLMo-style folders; a runs table names parents in base_run")
    return curves_from_runs(select_ladder(read_runs(path), sizes, None), loss, ratio)
