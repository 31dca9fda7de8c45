"""The LR-annealing law on the OLMo WSD ladder (constant-rate runs with decay branches, shared/anchors/olmo-wsd-ladder).

(1) Fitted on every logged step of the 190M-1.3B constant runs and their decay branches (with a size term), the
3B decay branches' final C4 losses at 0.5-10 xC are predicted: mean absolute % error and coverage of the 90%
run-bootstrap intervals. (2) Per size, fitted on the constant run plus its shortest (0.5 xC) branch only, the
longer branches' final losses are predicted. --plot draws the 3B 10 xC branch and constant run against the law.
JSON to stdout (and --json OUT). --smoke: the same on a generated four-size ladder in the OLMo layout.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from ladderlab.scaling.laws.annealing import SIZE_SCALE, final_predictions, fit_curves, lr_areas
from ladderlab.scaling.tables.curves import Curve, read_curves
from ladderlab.scaling.tables.olmo import OLMO_N, TASK_KEYS, acc_column, loss_column

from common import emit, parse  # benchmarks/common.py

REPO = Path(__file__).resolve().parents[1]
LOSS = "val/c4_en"
TRUTH = dict(L0=2.0, A=0.8, alpha=0.5, C=0.25, K=0.8, nu=0.3)  # the smoke ladder's law


def generated_ladder(folder: Path, big: str = "1B") -> tuple[Path, Path]:
    """A constant run to 10 xC and decay branches (linear to 10% over the last 10%) at 0.5-10 xC for 190M, 370M, 760M and `big`,
    in the OLMo layout, losses from TRUTH plus 0.1% noise: the smoke run's data."""
    rng = np.random.default_rng(0)
    keys = [k for parts in TASK_KEYS.values() for k, _ in parts]
    header = ["_step", "throughput/total_tokens", *map(loss_column, keys), *map(acc_column, keys),
              "optim/learning_rate_group0", "eval/c4_en-validation/CrossEntropyLoss"]
    const, decay = folder / "const", folder / "decay"
    const.mkdir(), decay.mkdir()
    for size, peak in (("190M", 1e-3), ("370M", 8e-4), ("760M", 6e-4), (big, 5e-4)):
        n, last = OLMO_N[size], 4000
        for mult, out in ((10, const), (0.5, decay), (1, decay), (2, decay), (5, decay), (10, decay)):
            end = int(last * mult / 10)
            lr = np.full(end, peak)
            if out is decay:
                k = max(end // 10, 2)
                lr[-k:] = peak * (1 - 0.9 * np.arange(1, k + 1) / k)
            s1, s2 = lr_areas(lr)
            steps = np.arange(100, end + 1, 100) if out is const else np.arange(end - end // 10, end + 1, 10)
            law = TRUTH["L0"] + TRUTH["K"] * (n / SIZE_SCALE) ** -TRUTH["nu"]
            loss = (law + TRUTH["A"] * s1[steps - 1] ** -TRUTH["alpha"] - TRUTH["C"] * s2[steps - 1])
            loss *= np.exp(rng.normal(0, 0.001, steps.size))
            cells = np.column_stack([steps, steps * 1e6, np.ones((steps.size, 2 * len(keys))), lr[steps - 1], loss])
            np.savetxt(out / f"{size}-{mult:g}xC.csv", cells, delimiter=",", header=",".join(header), comments="")
    return const, decay


def finals(fitted, curves: list[Curve]) -> list[dict]:
    """Each curve's last logged loss against the law's prediction and 90% interval there."""
    got = final_predictions(fitted, curves)
    lo, hi = (got["pred"], got["pred"]) if got["lo"] is None else (got["lo"], got["hi"])
    return [{"run": c.run, "actual": float(got["actual"][i]), "predicted": float(got["pred"][i]), "lo": float(lo[i]),
             "hi": float(hi[i]), "error_pct": float((got["pred"][i] / got["actual"][i] - 1) * 100)}
            for i, c in enumerate(curves)]


def summary(rows: list[dict]) -> dict:
    return {"mape_pct": float(np.mean([abs(r["error_pct"]) for r in rows])),
            "coverage_90": float(np.mean([r["lo"] <= r["actual"] <= r["hi"] for r in rows])), "runs": rows}


def measure(const: Path, decay: Path, big: str, bootstrap: int, plot: str | None) -> dict:
    start = time.perf_counter()
    curves = read_curves(const, LOSS, decay)
    size_of = {c.run: c.run.split("-")[0] for c in curves}
    branches = {s: sorted((c for c in curves if size_of[c.run] == s and c.start > 0), key=lambda c: c.last)
                for s in set(size_of.values())}
    train = [c for c in curves if size_of[c.run] != big]
    ladder = fit_curves(train, bootstrap=bootstrap, seed=0)
    cross = summary(finals(ladder, branches[big]))
    per_size = {}
    for size, own in sorted(branches.items()):
        main = next(c for c in curves if size_of[c.run] == size and c.start == 0)
        fitted = fit_curves([main, own[0]], size=False, bootstrap=bootstrap, seed=0)
        per_size[size] = finals(fitted, own[1:])
    seconds = time.perf_counter() - start
    if plot:
        from ladderlab.scaling.curve_plot import plot_curves
        from ladderlab.scaling.laws.annealing import dense_schedule, predict_schedule

        shown = [branches[big][-1], next(c for c in curves if size_of[c.run] == big and c.start == 0)]
        predicted = [(c.run, np.arange(1, c.last + 1), predict_schedule(ladder, dense_schedule(c.lr_steps, c.lr), c.n))
                     for c in shown]
        plot_curves(predicted, [(c.run, c.steps, c.loss) for c in shown], plot,
                    f"{big}: law fitted on the smaller sizes' runs and branches")
    flat = [r for rows in per_size.values() for r in rows]
    return {
        "benchmark": "wsd_ladder", "loss": LOSS, "bootstrap": bootstrap, "seconds": seconds,
        "fit_runs": len(train), "fit_points": ladder.n_points, "params": ladder.params,
        "cross_size": cross, "per_size": summary(flat) | {"by_size": {s: summary(r)["mape_pct"] for s, r in per_size.items()}},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--anchors", default=str(REPO.parent / "shared" / "anchors"), help="the anchors folder")
    ap.add_argument("--bootstrap", type=int, default=200)
    ap.add_argument("--plot", metavar="OUT.png", help="the largest size's 10 xC branch and constant run vs the law")
    args = parse(ap, smoke=dict(bootstrap=20))
    with tempfile.TemporaryDirectory() as tmp:
        if args.smoke:
            const, decay = generated_ladder(Path(tmp))
            big = "1B"
        else:
            root = Path(args.anchors) / "olmo-wsd-ladder"
            const, decay, big = root / "peteish-moreeval-const", root / "peteish-moreeval-decay", "3B"
        emit(measure(const, decay, big, args.bootstrap, args.plot), args.json)


if __name__ == "__main__":
    main()
