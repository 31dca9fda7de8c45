"""Speed-up of growth at equal loss, FLOPs_scratch / FLOPs_grown - 1 (Du et al. 2024, App. B.2), with an interval.

The rule: the loss compared is the higher of the two runs' final losses (the lowest loss both reach). When the grown
run ends lower, the speed-up is scratch's total FLOPs over the FLOPs the grown run needed to reach scratch's final
loss, minus 1 (positive); when scratch ends lower, the FLOPs scratch needed to reach the grown run's final loss over
the grown run's total, minus 1 (negative unless scratch got there late). "Needed to reach" interpolates between
eval points (linear in log FLOPs). Curves hold trained points only: a grown run's step 0 (the moment of growth, its
loss inherited from the small model) is dropped before this module sees it (`speedup_table`).

The interval: with two or more seeds (a scratch and a grown curve per seed), the mean of the seeds' speed-ups and
its 95% Student-t interval; with one seed, a parametric bootstrap that adds each curve's eval noise (estimated from
its points' second differences) to its points. "significant" says the interval excludes 0: curves that end within
each other's noise are not significant. Pure numpy and scipy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from ladderlab.errors import LadderlabError
from ladderlab.scaling.tables.columns import read_columns, read_header

SPEEDUP_KEYS = ("speedup", "lo", "hi", "significant")  # what `grow speedup --json` gives per run
Curve = tuple[np.ndarray, np.ndarray]  # (FLOPs, loss) of one run's eval points, in training order


def flops_to_reach(flops: np.ndarray, loss: np.ndarray, level: float) -> float:
    """FLOPs at which the curve first reaches `level` (linear in log FLOPs between points); NaN if it never does.
    A curve already at or below `level` at its first point reaches it there (nothing before it is credited)."""
    flops, loss = np.asarray(flops, float), np.asarray(loss, float)
    order = np.argsort(flops)
    flops, best = flops[order], np.minimum.accumulate(loss[order])  # the best loss so far
    hit = np.flatnonzero(best <= level)
    if not len(hit):
        return float("nan")
    i = hit[0]
    if i == 0 or best[i] == best[i - 1]:
        return float(flops[i])
    t = (best[i - 1] - level) / (best[i - 1] - best[i])
    return float(np.exp(np.log(flops[i - 1]) + t * (np.log(flops[i]) - np.log(flops[i - 1]))))


def equal_loss_speedup(scratch: Curve, grown: Curve) -> dict[str, float]:
    """The rule (module docstring) for one scratch and one grown curve: {loss (the level compared), flops_scratch,
    flops_grown (the FLOPs each spent to reach it), speedup}."""
    (fs, ls), (fg, lg) = (_checked(c, name) for c, name in ((scratch, "scratch"), (grown, "grown")))
    end_s, end_g = float(ls[np.argmax(fs)]), float(lg[np.argmax(fg)])
    if end_g <= end_s:  # the grown run ends lower: its FLOPs to scratch's final loss against scratch's total
        level, at_scratch, at_grown = end_s, float(fs.max()), flops_to_reach(fg, lg, end_s)
    else:  # scratch ends lower: its FLOPs to the grown run's final loss against the grown run's total
        level, at_scratch, at_grown = end_g, flops_to_reach(fs, ls, end_g), float(fg.max())
    return {"loss": level, "flops_scratch": at_scratch, "flops_grown": at_grown, "speedup": at_scratch / at_grown - 1}


def curve_noise(loss: np.ndarray) -> float:
    """A curve's eval noise (standard deviation of one point): from the second differences of its later half, where
    the trend's curvature is small (white noise of sd s gives second differences of sd s sqrt(6)); a median-based
    spread, so one spike does not dominate. 0 for fewer than 4 points."""
    y = np.asarray(loss, float)[len(loss) // 2 - 1:] if len(loss) >= 6 else np.asarray(loss, float)
    if len(y) < 4:
        return 0.0
    second = np.diff(y, 2)
    return float(1.4826 * np.median(np.abs(second - np.median(second))) / np.sqrt(6))


def speedup(scratch: list[Curve], grown: list[Curve], *, level: float = 0.95, n_boot: int = 2000,
            seed: int = 0) -> dict[str, Any]:
    """The speed-up of a grown run over scratch with its interval (module docstring); scratch[i] and grown[i] are
    one seed's curves. Returns {speedup, lo, hi, significant, seeds, interval ("seeds" or "eval noise"), loss,
    flops_scratch, flops_grown, final_scratch, final_grown} (loss and FLOPs: means over seeds)."""
    if not scratch or len(scratch) != len(grown):
        raise LadderlabError(f"speed-up: needs one scratch curve per grown curve (seeds), got {len(scratch)} scratch "
                             f"and {len(grown)} grown")
    each = [equal_loss_speedup(s, g) for s, g in zip(scratch, grown)]
    values = np.array([e["speedup"] for e in each])
    if len(each) > 1:
        mean, half = values.mean(), stats.t.ppf(0.5 + level / 2, len(values) - 1) * stats.sem(values)
        lo, hi, how = mean - half, mean + half, "seeds"
    else:
        mean, (lo, hi), how = values[0], _noise_interval(scratch[0], grown[0], level, n_boot, seed), "eval noise"
    return {"speedup": float(mean), "lo": float(lo), "hi": float(hi), "significant": bool(lo > 0 or hi < 0),
            "seeds": len(each), "interval": how,
            **{k: float(np.mean([e[k] for e in each])) for k in ("loss", "flops_scratch", "flops_grown")},
            "final_scratch": float(np.mean([c[1][np.argmax(c[0])] for c in scratch])),
            "final_grown": float(np.mean([c[1][np.argmax(c[0])] for c in grown]))}


def _noise_interval(scratch: Curve, grown: Curve, level: float, n_boot: int, seed: int) -> tuple[float, float]:
    """Percentile interval of the rule over curves redrawn with each one's eval noise added to its points."""
    rng = np.random.default_rng(seed)
    (fs, ls), (fg, lg) = scratch, grown
    noise_s, noise_g = curve_noise(ls), curve_noise(lg)
    draws = [equal_loss_speedup((fs, ls + rng.normal(0, noise_s, len(ls))), (fg, lg + rng.normal(0, noise_g, len(lg))))
             ["speedup"] for _ in range(n_boot)]
    lo, hi = np.percentile(draws, [50 * (1 - level), 50 * (1 + level)])
    return float(lo), float(hi)


def _checked(curve: Curve, name: str) -> Curve:
    flops, loss = np.asarray(curve[0], float), np.asarray(curve[1], float)
    if len(flops) < 2 or flops.shape != loss.shape:
        raise LadderlabError(f"speed-up: the {name} curve needs at least two trained eval points (it has "
                             f"{len(flops)}); a grown run's step 0 does not count")
    if not (np.all(np.isfinite(loss)) and np.all(flops > 0)):
        raise LadderlabError(f"speed-up: the {name} curve has a non-finite loss or a FLOPs value <= 0")
    return flops, loss


def speedup_table(columns: dict[str, np.ndarray], scratch: str = "scratch", **options: Any) -> dict[str, dict]:
    """{run: speedup(...)} for every run but `scratch`, from growth_runs.csv's columns (run, step, flops, loss and,
    if present, seed). Step-0 points are dropped (a grown run's step 0 is the moment of growth)."""
    run, step = columns["run"].astype(str), np.asarray(columns["step"], float)
    seed = np.asarray(columns["seed"], float) if "seed" in columns else np.zeros(len(run))
    keep = step > 0
    curves: dict[str, dict[float, Curve]] = {}
    for name in dict.fromkeys(run[keep]):
        for s in dict.fromkeys(seed[keep & (run == name)]):
            m = keep & (run == name) & (seed == s)
            order = np.argsort(step[m], kind="stable")
            curves.setdefault(name, {})[s] = (np.asarray(columns["flops"], float)[m][order],
                                              np.asarray(columns["loss"], float)[m][order])
    if scratch not in curves:
        raise LadderlabError(f"speed-up: no {scratch!r} run among {', '.join(curves) or 'the rows'}")
    out = {}
    for name, by_seed in curves.items():
        if name != scratch:
            seeds = [s for s in by_seed if s in curves[scratch]]
            if not seeds:
                raise LadderlabError(f"speed-up: run {name!r} has no seed in common with {scratch!r}")
            out[name] = speedup([curves[scratch][s] for s in seeds], [by_seed[s] for s in seeds], **options)
    return out


def speedups_from_csv(path: str | Path, **options: Any) -> dict[str, dict[str, Any]]:
    """`speedup_table` of a growth_runs.csv (run, step, flops, loss; `seed` if present)."""
    numeric = ["step", "flops", "loss"] + (["seed"] if "seed" in read_header(path) else [])
    return speedup_table(read_columns(path, numeric, ["run"]), **options)
