"""Task scaling laws from a model ladder (Bhagia et al. 2024): a big model's benchmark accuracy from small runs.

Step 1 predicts a task's loss at (N, D). The paper's method ("paper") fits task loss L(N, D) = E + A/N^alpha +
B/D^beta on one point per run (mean of its last checkpoints). The default ("loss-to-loss", see bridge.py) fits that
law to the general validation loss instead and bridges it to the task loss; on the OLMo ladder it cuts the step-1
misses of ARC by about 40% and of CSQA by 20%, and is used whenever the runs have the general loss.
Step 2 fits Acc(L) = a / (1 + exp(-k (L - L0))) + b on every checkpoint after the first 10% of each run, smoothed
by a trailing mean, plus the anchor (L=0, Acc=1). The chained prediction is step2(step1(N, D)); its interval pairs
bootstrap replicates of step 1 (resampling runs) with those of step 2 (resampling checkpoints) and, since the target
is one run, adds to each a run's scatter about step 2 (a fitted run's final accuracy minus step 2 at its final task
loss, centred, drawn at random): a prediction interval for the run's accuracy, not only for the law's. The single-step
baseline fits accuracy straight from (N, D). Each task is also backtested: refitted without the ladder's largest
size, it predicts that size's runs; a task is `predictable` only when its interval is narrow, no step-1 parameter
sits at a bound and that backtest error is small ("auto" picks, per task, the method with the smaller one).
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
from ladderlab.scaling.tasks.bridge import GENERAL, LossToLoss, general_points

LAST = 5  # step 1: mean of each run's last 5 checkpoints
SKIP = 0.1  # step 2: drop the first 10% of each run's checkpoints
WINDOW = 5  # step 2: trailing moving average
NOISE_LAST = 10  # noise: SD over the largest run's last 10 checkpoints
METHODS = ("loss-to-loss", "paper")  # step-1 methods


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
    """A task's prediction at one (N, D): chained loss and accuracy with intervals, the single-step baseline, the
    step-1 method, and the verdict (`predictable` when `reasons` is empty)."""

    loss: float
    loss_lo: float
    loss_hi: float
    acc: float
    acc_lo: float
    acc_hi: float
    single_step_acc: float
    method: str
    backtest_error: float | None
    reasons: tuple[str, ...]

    @property
    def predictable(self) -> bool:
        return not self.reasons

    def to_json(self) -> dict[str, Any]:
        return {**self.__dict__, "reasons": list(self.reasons), "predictable": self.predictable}


@dataclass(frozen=True)
class Backtest:
    """Each method's mean |accuracy error| (fraction) predicting the largest size's runs from the smaller ones."""

    held_out: float
    distance: float  # held-out N over the largest N fitted
    errors: dict[str, float]


@dataclass
class TaskLaw:
    """One task's fitted laws: step 1 (the paper's, and the general-loss law and bridge when used), step 2, the
    single-step baseline, its measured noise, its backtest and the runs' scatter about step 2."""

    task: str
    step1: FittedLaw
    step2: FittedLaw
    single: FittedLaw
    noise: Noise
    max_width: float = 0.1
    method: str = "paper"
    general: FittedLaw | None = None
    bridge: FittedLaw | None = None
    backtest: Backtest | None = None
    max_backtest_error: float = 0.05
    scatter: np.ndarray = field(default_factory=lambda: np.zeros(1))  # centred step-2 residuals, runs' final points

    def loss_point(self, n: float, d: float) -> float:
        return step1_loss(self.method, self.step1, self.general, self.bridge, n, d)

    def loss_samples(self, n: float, d: float) -> np.ndarray:
        """Step-1 replicates; loss-to-loss pairs the general law's replicate b with the bridge's (same runs drawn)."""
        if self.method == "paper":
            return self.step1.predict_samples(N=n, D=d)[:, 0]
        general_B = self.general.predict_samples(N=n, D=d)[:, 0]
        return np.diagonal(self.bridge.law.predict_batch(self.bridge.boot_BxP, {"L": general_B}))

    def acc_samples(self, n: float, d: float) -> np.ndarray:
        """Chained replicates: step-2 replicate b applied to step-1 replicate b's loss."""
        return np.diagonal(self.step2.law.predict_batch(self.step2.boot_BxP, {"L": self.loss_samples(n, d)}))

    def run_samples(self, n: float, d: float) -> np.ndarray:
        """Replicates of one run's accuracy: chained replicate b plus a run's scatter about step 2 drawn at random
        (seeded from step 2's replicates, so a refit with the same seed repeats them)."""
        rng = np.random.default_rng(_seed(self.step2.seed, 3))
        acc_B = self.acc_samples(n, d)
        return acc_B + rng.choice(self.scatter, len(acc_B))

    def step1_laws(self) -> list[FittedLaw]:
        """The fitted laws step 1 uses: the paper's, or the general law and the bridge."""
        return [self.step1] if self.method == "paper" else [self.general, self.bridge]

    def reasons(self, width: float) -> tuple[str, ...]:
        """Why this task's prediction is not to be trusted: wide interval, step-1 bound, large backtest error."""
        out = [f"interval {100 * width:.1f} points wide (> {100 * self.max_width:.0f})"] if width > self.max_width else []
        out += [f"step 1 {f.law.name}: {w.split(';')[0]}" for f in self.step1_laws() for w in f.warnings if "at its bound" in w]
        error = self.backtest_error
        if error is not None and error > self.max_backtest_error:
            out.append(f"backtest {100 * error:.1f} points off at {self.backtest.distance:.1f}x the largest fitted N "
                       f"(> {100 * self.max_backtest_error:.0f})")
        return tuple(out)

    @property
    def backtest_error(self) -> float | None:
        return None if self.backtest is None else self.backtest.errors.get(self.method)

    def predict(self, N: float, D: float, level: float = 0.9) -> TaskPrediction:
        """Chained prediction at (N, D) with percentile intervals (needs bootstrap replicates): the task loss's over
        step 1's replicates, the accuracy's over one run's (`run_samples`)."""
        loss = self.loss_point(N, D)
        acc = float(self.step2.predict(L=loss)[0])
        (l_lo,), (l_hi,) = percentile_interval(self.loss_samples(N, D)[:, None], level)
        (a_lo,), (a_hi,) = percentile_interval(self.run_samples(N, D)[:, None], level)
        single = float(self.single.predict(N=N, D=D)[0])
        return TaskPrediction(loss, float(l_lo), float(l_hi), acc, float(a_lo), float(a_hi), single, self.method,
                              self.backtest_error, self.reasons(float(a_hi - a_lo)))


def step1_loss(method: str, step1: FittedLaw, general: FittedLaw | None, bridge: FittedLaw | None, n: float,
               d: float) -> float:
    """Step 1's task loss at (N, D): the paper's law, or the general loss law followed by the bridge."""
    if method == "paper":
        return float(step1.predict(N=n, D=d)[0])
    return float(bridge.predict(L=general.predict(N=n, D=d))[0])


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


def fit_general(runs: Runs, column: str = GENERAL, last: int = LAST, bootstrap: int = 0, seed: int = 0) -> FittedLaw:
    """The general validation loss L_g(N, D) on one point per run, with `bootstrap` replicates resampling runs."""
    p = general_points(runs, column, last)
    x1, y1 = {"N": p["N"], "D": p["D"]}, p["L"]
    general = fit_law(Chinchilla(), x1, y1)
    return _bootstrap(general, x1, y1, n=bootstrap, seed=_seed(seed, 0), warm=True) if bootstrap else general


def resolve_method(runs: Runs, method: str, general: str = GENERAL) -> str:
    """The step-1 method to use: `method`, or for "default" loss-to-loss when the runs have `general`, else paper."""
    if method not in (*METHODS, "auto", "default"):
        raise LadderlabError(f"task method {method!r}: expected one of {', '.join((*METHODS, 'auto', 'default'))}")
    has = general in runs.cols
    if method in ("loss-to-loss", "auto") and not has:
        raise LadderlabError(f"{runs.source}: method {method} needs the general loss column {general!r}, absent")
    return ("loss-to-loss" if has else "paper") if method == "default" else method


def split_largest(runs: Runs) -> tuple[Runs, Runs] | None:
    """(runs below the largest N, runs at it), or None when fewer than 2 smaller sizes or 6 smaller runs remain."""
    n_last = np.array([runs["N"][runs.rows_of(r)[-1]] for r in runs.run_ids])
    small = [r for r, n in zip(runs.run_ids, n_last) if n < n_last.max()]
    if len(np.unique(n_last[n_last < n_last.max()])) < 2 or len(small) < 6:
        return None
    keep = np.isin(runs["run"], small)
    return runs.select(keep), runs.select(~keep)


def backtest_task(runs: Runs, task: str, methods: Sequence[str], general: str = GENERAL, last: int = LAST,
                  skip: float = SKIP, window: int = WINDOW, inner_general: FittedLaw | None = None) -> Backtest | None:
    """Refit `task` by each method (point fits) without the largest size and predict that size's runs."""
    split = split_largest(runs)
    if split is None:
        return None
    small, large = split
    if "loss-to-loss" in methods and inner_general is None:
        inner_general = fit_general(small, general, last)
    step1, bridge, step2 = _fit_steps(small, task, methods, general, last, skip, window)
    p = step1_points(large, task, last)
    errors = {}
    for m in methods:
        pred = [step2.predict(L=step1_loss(m, step1, inner_general, bridge, n, d))[0] for n, d in zip(p["N"], p["D"])]
        errors[m] = float(np.mean(np.abs(np.array(pred) - p["acc"])))
    return Backtest(float(p["N"].max()), float(p["N"].max() / step1_points(small, task, last)["N"].max()), errors)


def _fit_steps(runs: Runs, task: str, methods: Sequence[str], column: str, last: int, skip: float,
               window: int) -> tuple[FittedLaw | None, FittedLaw | None, FittedLaw]:
    """Point fits of `task`'s step 1 for each method (the paper's law, the loss-to-loss bridge) and step 2."""
    p1 = step1_points(runs, task, last)
    step1 = fit_law(Chinchilla(), {"N": p1["N"], "D": p1["D"]}, p1["loss"]) if "paper" in methods else None
    bridge = None
    if "loss-to-loss" in methods:
        bridge = fit_law(LossToLoss(), {"L": general_points(runs, column, last)["L"]}, p1["loss"], n_refine=4)
    p2 = step2_points(runs, task, skip, window)
    step2 = fit_law(SigmoidAccuracy(), {"L": np.append(p2["L"], 0.0)}, np.append(p2["acc"], 1.0))
    return step1, bridge, step2


def run_scatter(step2: FittedLaw, p1: dict[str, np.ndarray]) -> np.ndarray:
    """Each run's final accuracy minus step 2 at its final task loss, centred (the point prediction carries no
    offset, so neither does its interval): the spread of one run's accuracy about the law."""
    residual = p1["acc"] - step2.predict(L=p1["loss"])
    return residual - residual.mean()


def fit_task(
    runs: Runs, task: str, bootstrap: int = 1000, seed: int = 0, max_width: float = 0.1, task_index: int = 0,
    last: int = LAST, skip: float = SKIP, window: int = WINDOW, method: str = "default", general: str = GENERAL,
    general_law: FittedLaw | None = None, inner_general: FittedLaw | None = None, max_backtest_error: float = 0.05,
) -> TaskLaw:
    """Fit one task's laws and backtest; bootstrap step 1 over runs and step 2 over checkpoints.

    method: "paper", "loss-to-loss" (bridged from the `general` loss column), "auto" (per task, whichever of the
    two has the smaller backtest error) or "default" (loss-to-loss when the runs have `general`, else paper).
    `general_law`: the general loss's fitted law with replicates (`fit_general`), shared by every task.
    """
    if bootstrap < 1:
        raise LadderlabError(f"task {task}: the chained interval needs bootstrap >= 1, got {bootstrap}")
    method = resolve_method(runs, method, general)
    methods = list(METHODS) if method == "auto" else [method]
    if method != "paper" and general_law is None:
        general_law = fit_general(runs, general, last, bootstrap, seed)
    backtest = backtest_task(runs, task, methods, general, last, skip, window, inner_general)
    if method == "auto":
        method = min(methods, key=lambda m: backtest.errors[m]) if backtest else "loss-to-loss"
    step1, bridge, step2 = _fit_steps(runs, task, sorted({"paper", method}), general, last, skip, window)
    p1 = step1_points(runs, task, last)
    single = fit_law(SingleStep(), {"N": p1["N"], "D": p1["D"]}, p1["acc"], n_refine=4)
    law = TaskLaw(task, step1, step2, single, measure_noise(runs, task), max_width, method, general_law, bridge,
                  backtest, max_backtest_error, run_scatter(step2, p1))
    _bootstrap(law.step1, {"N": p1["N"], "D": p1["D"]}, p1["loss"], n=bootstrap, seed=_seed(seed, task_index, 1),
               warm=True)
    if law.bridge is not None:  # the general law's seed: replicate b draws the same runs in both
        _bootstrap(law.bridge, {"L": general_points(runs, general, last)["L"]}, p1["loss"], n=bootstrap,
                   seed=general_law.seed, warm=True)
    p2 = step2_points(runs, task, skip, window)
    y2 = np.append(p2["acc"], 1.0)
    _bootstrap(law.step2, {"L": np.append(p2["L"], 0.0)}, y2, n=bootstrap, seed=_seed(seed, task_index, 2), warm=True,
               always=np.array([len(y2) - 1]))
    return law


def fit(
    runs: Runs, tasks: Sequence[str] | None = None, bootstrap: int = 1000, seed: int = 0,
    max_width: float = 0.1, workers: int | None = None, **options: Any,
) -> TaskLaws:
    """Fit the task laws of `tasks` (default: every task in the runs table), tasks in parallel processes.

    `options` go to `fit_task`: last (step-1 checkpoints averaged), skip (step-2 fraction dropped), window,
    method, general (the general loss column), max_backtest_error.
    """
    tasks = list(tasks or runs.tasks)
    for t in tasks:
        runs.require_task(t)
    if bootstrap < 1:
        raise LadderlabError(f"the chained interval needs bootstrap >= 1, got {bootstrap}")
    column, last = options.get("general", GENERAL), options.get("last", LAST)
    if resolve_method(runs, options.get("method", "default"), column) != "paper":
        options["general_law"] = fit_general(runs, column, last, bootstrap, seed)
        split = split_largest(runs)
        options["inner_general"] = fit_general(split[0], column, last) if split else None
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
