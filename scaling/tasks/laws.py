"""Task scaling laws from a model ladder (Bhagia et al. 2024): a big model's benchmark accuracy from small runs.

Step 1 fits task loss L(N, D) = E + A/N^alpha + B/D^beta on one point per run (mean of its last checkpoints);
step 2 fits Acc(L) = a / (1 + exp(-k (L - L0))) + b on every checkpoint after the first 10% of each run, smoothed
by a trailing mean, plus the anchor (L=0, Acc=1). The chained prediction is step2(step1(N, D)); its interval pairs
bootstrap replicates of step 1 (resampling runs) with those of step 2 (resampling checkpoints). The single-step
baseline fits accuracy straight from (N, D). Each task's checkpoint-to-checkpoint noise is measured too, and a
task whose interval is wider than `max_width` is flagged as not predictable at this ladder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ladderlab.errors import LadderlabError
from ladderlab.scaling.engine.bootstrap import bootstrap as _bootstrap
from ladderlab.scaling.engine.law import Data, FittedLaw, Law, Param, fit_law, percentile_interval
from ladderlab.scaling.engine.parallel import map_jobs
from ladderlab.scaling.laws.accuracy import SigmoidAccuracy
from ladderlab.scaling.laws.chinchilla import Chinchilla
from ladderlab.scaling.tables.runs import Runs

LAST = 5  # step 1: mean of each run's last 5 checkpoints
SKIP = 0.1  # step 2: drop the first 10% of each run's checkpoints
WINDOW = 5  # step 2: trailing moving average
NOISE_LAST = 10  # noise: SD over the largest run's last 10 checkpoints


class SingleStep(Law):
    """Baseline Acc(N, D) = a / (1 + exp(-(A/N^alpha + B/D^beta - c))) + b: the two steps fused, fitted at once."""

    name = "single-step"
    inputs = ("N", "D")
    residual = "raw"
    loss = "l2"
    params = (
        Param("a", False, -1.0, 0.0, (-0.75, -0.5)),
        Param("b", False, 0.0, 1.0, (0.75, 1.0)),
        Param("A", True, -20.0, 60.0, (0.0, 5.0, 10.0)),
        Param("B", True, -20.0, 60.0, (0.0, 5.0, 10.0)),
        Param("alpha", False, 0.0, 4.0, (0.2, 0.5, 1.0)),
        Param("beta", False, 0.0, 4.0, (0.2, 0.5, 1.0)),
        Param("c", False, -50.0, 50.0, (-5.0, -2.0, 0.0, 2.0)),
    )

    def predict_batch(self, theta_SxP: np.ndarray, x: Data) -> np.ndarray:
        a, b, la, lb, alpha, beta, c = (theta_SxP[:, i : i + 1] for i in range(7))
        z = np.exp(la - alpha * np.log(x["N"])[None, :]) + np.exp(lb - beta * np.log(x["D"])[None, :]) - c
        return a / (1.0 + np.exp(-z)) + b


def trailing_mean(v: np.ndarray, window: int) -> np.ndarray:
    """Mean of each value and the window-1 before it (fewer at the start)."""
    c = np.concatenate([[0.0], np.cumsum(v)])
    i = np.arange(1, len(v) + 1)
    lo = np.maximum(i - window, 0)
    return (c[i] - c[lo]) / (i - lo)


def step1_points(runs: Runs, task: str, last: int = LAST) -> dict[str, np.ndarray]:
    """One point per run: N, final D, mean task loss and accuracy of the last `last` checkpoints."""
    runs.require_task(task)
    rows = [runs.rows_of(r) for r in runs.run_ids]
    return {
        "N": np.array([runs["N"][i[-1]] for i in rows]),
        "D": np.array([runs["D"][i[-1]] for i in rows]),
        "loss": np.array([runs[f"loss/{task}"][i[-last:]].mean() for i in rows]),
        "acc": np.array([runs[f"acc/{task}"][i[-last:]].mean() for i in rows]),
    }


def step2_points(runs: Runs, task: str, skip: float = SKIP, window: int = WINDOW) -> dict[str, np.ndarray]:
    """Smoothed (loss, accuracy) of every checkpoint after the first `skip` fraction of each run (no anchor)."""
    runs.require_task(task)
    loss, acc = [], []
    for r in runs.run_ids:
        i = runs.rows_of(r)
        keep = slice(int(np.ceil(skip * len(i))), None)
        loss.append(trailing_mean(runs[f"loss/{task}"][i], window)[keep])
        acc.append(trailing_mean(runs[f"acc/{task}"][i], window)[keep])
    return {"L": np.concatenate(loss), "acc": np.concatenate(acc)}


@dataclass(frozen=True)
class Noise:
    """Checkpoint-to-checkpoint spread over the last checkpoints of the largest run (the paper's SD_10)."""

    run: str
    loss_sd: float
    acc_sd: float
    loss_rel_sd: float
    acc_rel_sd: float


def measure_noise(runs: Runs, task: str, last: int = NOISE_LAST) -> Noise:
    """SD and relative SD of task loss and accuracy over the final `last` checkpoints of the largest, longest run."""
    largest = max(runs.run_ids, key=lambda r: (runs["N"][runs.rows_of(r)[-1]], runs["D"][runs.rows_of(r)[-1]]))
    i = runs.rows_of(largest)[-last:]
    loss, acc = runs[f"loss/{task}"][i], runs[f"acc/{task}"][i]
    sd_l, sd_a = float(np.std(loss, ddof=1)), float(np.std(acc, ddof=1))
    return Noise(largest, sd_l, sd_a, sd_l / float(np.mean(loss)), sd_a / float(np.mean(acc)))


@dataclass(frozen=True)
class TaskPrediction:
    """A task's prediction at one (N, D): chained loss and accuracy with intervals, and the single-step baseline."""

    loss: float
    loss_lo: float
    loss_hi: float
    acc: float
    acc_lo: float
    acc_hi: float
    single_step_acc: float
    predictable: bool

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class TaskLaw:
    """The fitted step-1, step-2 and single-step laws of one task, with its measured noise."""

    task: str
    step1: FittedLaw
    step2: FittedLaw
    single: FittedLaw
    noise: Noise
    max_width: float = 0.1

    def loss_samples(self, n: float, d: float) -> np.ndarray:
        return self.step1.predict_samples(N=n, D=d)[:, 0]

    def acc_samples(self, n: float, d: float) -> np.ndarray:
        """Chained replicates: step-2 replicate b applied to step-1 replicate b's loss."""
        loss_B = self.loss_samples(n, d)
        return np.array([self.step2.law.predict_batch(t[None, :], {"L": np.array([l])})[0, 0]
                         for t, l in zip(self.step2.boot_BxP, loss_B)])

    def predict(self, N: float, D: float, level: float = 0.9) -> TaskPrediction:
        """Chained prediction at (N, D) with its percentile interval (needs bootstrap replicates)."""
        loss = float(self.step1.predict(N=N, D=D)[0])
        acc = float(self.step2.predict(L=loss)[0])
        (l_lo,), (l_hi,) = percentile_interval(self.loss_samples(N, D)[:, None], level)
        (a_lo,), (a_hi,) = percentile_interval(self.acc_samples(N, D)[:, None], level)
        single = float(self.single.predict(N=N, D=D)[0])
        return TaskPrediction(loss, float(l_lo), float(l_hi), acc, float(a_lo), float(a_hi), single,
                              bool(a_hi - a_lo <= self.max_width))


@dataclass
class TaskLaws:
    """Fitted task laws for every task of a ladder; `predict(N, D)` gives each task's prediction."""

    laws: dict[str, TaskLaw]
    runs: list[str] = field(default_factory=list)

    def predict(self, N: float, D: float, level: float = 0.9) -> dict[str, TaskPrediction]:
        check_target("target", N, D)
        return {task: law.predict(N, D, level) for task, law in self.laws.items()}


def check_target(name: str, n: float, d: float) -> None:
    for what, v in (("N", n), ("D", d)):
        if not np.isfinite(v) or v <= 0:
            raise LadderlabError(f"target {name}: {what} must be a positive number, got {v}")


def _seed(seed: int, *path: int) -> int:
    return int(np.random.SeedSequence([seed, *path]).generate_state(1)[0])


def fit_task(
    runs: Runs, task: str, bootstrap: int = 1000, seed: int = 0, max_width: float = 0.1, task_index: int = 0,
    last: int = LAST, skip: float = SKIP, window: int = WINDOW,
) -> TaskLaw:
    """Fit one task's two steps and single-step baseline; bootstrap step 1 over runs and step 2 over checkpoints."""
    p1 = step1_points(runs, task, last)
    x1, y1 = {"N": p1["N"], "D": p1["D"]}, p1["loss"]
    step1 = fit_law(Chinchilla(), x1, y1)
    p2 = step2_points(runs, task, skip, window)
    x2 = {"L": np.append(p2["L"], 0.0)}
    y2 = np.append(p2["acc"], 1.0)
    anchor = np.array([len(y2) - 1])
    step2 = fit_law(SigmoidAccuracy(), x2, y2)
    single = fit_law(SingleStep(), x1, p1["acc"], n_refine=4)
    if bootstrap < 1:
        raise LadderlabError(f"task {task}: the chained interval needs bootstrap >= 1, got {bootstrap}")
    _bootstrap(step1, x1, y1, n=bootstrap, seed=_seed(seed, task_index, 1), warm=True)
    _bootstrap(step2, x2, y2, n=bootstrap, seed=_seed(seed, task_index, 2), warm=True, always=anchor)
    return TaskLaw(task, step1, step2, single, measure_noise(runs, task), max_width)


def fit(
    runs: Runs, tasks: Sequence[str] | None = None, bootstrap: int = 1000, seed: int = 0,
    max_width: float = 0.1, workers: int | None = None, **options: float,
) -> TaskLaws:
    """Fit the task laws of `tasks` (default: every task in the runs table), tasks in parallel processes.

    `options` go to `fit_task`: last (step-1 checkpoints averaged), skip (step-2 fraction dropped), window.
    """
    tasks = list(tasks or runs.tasks)
    for t in tasks:
        runs.require_task(t)
    jobs = [(runs, t, bootstrap, seed, max_width, i, options) for i, t in enumerate(tasks)]
    workers = min(workers or os.cpu_count() or 1, len(tasks))
    fitted = map_jobs(_fit_job, jobs, workers)
    return TaskLaws(dict(zip(tasks, fitted)), runs.run_ids)


def _fit_job(job: tuple) -> TaskLaw:
    runs, task, bootstrap, seed, max_width, index, options = job
    return fit_task(runs, task, bootstrap, seed, max_width, index, **options)


def actual(runs: Runs, name: str, n: float, d: float, task: str, last: int = LAST) -> dict[str, float] | None:
    """The observed loss and accuracy at a target (mean of the last `last` checkpoints), if the runs include it.

    A run matches by id (`name`), or by N within 0.5% and final tokens within 2%.
    """
    for r in runs.run_ids:
        i = runs.rows_of(r)
        n_r, d_r = runs["N"][i[-1]], runs["D"][i[-1]]
        if r == name or (abs(n_r / n - 1) < 0.005 and abs(d_r / d - 1) < 0.02):
            return {"loss": float(runs[f"loss/{task}"][i[-last:]].mean()),
                    "acc": float(runs[f"acc/{task}"][i[-last:]].mean())}
    return None
