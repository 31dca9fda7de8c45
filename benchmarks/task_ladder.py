"""Task scaling laws on the real OLMo ladder: each step-1 method against held-out rungs, per task, with coverage.

Two fit-small / predict-large splits: the paper's 16 runs (190M-1.3B x 1, 2, 5, 10 xC) -> the 3.2B rung, and
190M-760M -> the 1.3B rung, each at 1, 2, 5, 10 xC. For each step-1 method (the paper's task-loss law, loss-to-loss
from the general validation loss, and the per-task choice by backtest) and each task: mean |step-1 task-loss error|
(%), mean |chained accuracy error| and single-step error (points), coverage and mean width of the 90% intervals
(one run's, as predicted, and the laws' alone: bootstrap replicates without the runs' scatter), the verdicts. Also the
wall time of the default method's fit on the 16 runs (8 tasks, 1,000 resamples per step; target under 60 s on the
2-core dev machine). JSON to stdout (and --json OUT). --smoke: a generated ladder in the OLMo layout, 20 resamples.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from ladderlab.scaling.engine.law import percentile_interval
from ladderlab.scaling.tables.olmo import MAIN_TASKS, OLMO_N, TASK_KEYS, acc_column, loss_column, read_olmo_ladder
from ladderlab.scaling.tasks import laws as tasks
from ladderlab.scaling.tasks import report as task_report

from common import emit, parse  # benchmarks/common.py

REPO = Path(__file__).resolve().parents[1]
MULTIPLES = (1, 2, 5, 10)
SPLITS = {"3B_from_16_runs": (["190M", "370M", "760M", "1B"], "3B"), "1B_from_190M-760M": (["190M", "370M", "760M"], "1B")}
GENERAL_COLUMN = "eval/pile-validation/CrossEntropyLoss"  # read as val/pile, the loss-to-loss bridge's source


def generated_ladder(folder: Path) -> Path:
    """OLMo-layout run CSVs (190M-3B x 1, 2, 5, 10 xC, 10 checkpoints each): a general loss on a known law, each
    task's loss a power of it, accuracy a sigmoid of that, plus 1% noise: the smoke run's data."""
    rng = np.random.default_rng(0)
    keys = [k for parts in TASK_KEYS.values() for k, _ in parts]
    header = ",".join(["_step", "throughput/total_tokens", GENERAL_COLUMN, *map(loss_column, keys), *map(acc_column, keys)])
    for size in ("190M", "370M", "760M", "1B", "3B"):
        for multiple in MULTIPLES:
            d = np.linspace(0.1, 1, 10) * multiple * 20 * OLMO_N[size]
            general = 1.5 + 300 / OLMO_N[size] ** 0.3 + 300 / d**0.3
            loss = (0.3 + 0.2 * general**1.5)[:, None] * (1 + 0.01 * rng.standard_normal((10, len(keys))))
            acc = 0.95 - 0.7 / (1 + np.exp(-3 * (loss - 1.5)))
            rows = np.column_stack([np.arange(1, 11) * 1000, d, general, loss, acc])
            np.savetxt(folder / f"{size}-{multiple}xC.csv", rows, delimiter=",", header=header, comments="")
    return folder


def evaluate(laws: tasks.TaskLaws, everything, held: str) -> dict:
    """Per task and overall: errors, coverage and verdicts predicting the `held` rung at each multiple."""
    targets = [task_report.Target(r, OLMO_N[held], float(everything["D"][everything.rows_of(r)[-1]]))
               for r in (f"{held}-{k}xC" for k in MULTIPLES)]
    doc = task_report.predictions(laws, targets, everything, 0.9)
    per_task = task_report.error_summary(doc)
    for task, e in per_task.items():
        law = laws.laws[task]
        e.update(method=law.method, predictable=sum(doc[t.name][task]["predictable"] for t in targets),
                 backtest_err_pts=None if law.backtest_error is None else 100 * law.backtest_error)
    rows = [r for by_task in doc.values() for r in by_task.values()]
    law_only = [(percentile_interval(law.acc_samples(t.N, t.D)[:, None], 0.9), doc[t.name][task]["actual_acc"])
                for t in targets for task, law in laws.laws.items()]
    return {
        "mean_step1_loss_err_pct": float(np.mean([e["step1_loss_err_pct"] for e in per_task.values()])),
        "mean_chain_acc_err_pts": float(np.mean([e["chain_acc_err_pts"] for e in per_task.values()])),
        "mean_single_acc_err_pts": float(np.mean([e["single_acc_err_pts"] for e in per_task.values()])),
        "coverage_90": float(np.mean([r["in_interval"] for r in rows])),
        "covered": int(sum(r["in_interval"] for r in rows)),
        "mean_width_pts": float(np.mean([100 * (r["acc_hi"] - r["acc_lo"]) for r in rows])),
        "covered_laws_only": int(sum(lo[0] <= y <= hi[0] for (lo, hi), y in law_only)),
        "mean_width_pts_laws_only": float(np.mean([100 * (hi[0] - lo[0]) for (lo, hi), _ in law_only])),
        "n_targets": len(rows),
        "predictable": int(sum(r["predictable"] for r in rows)),
        "per_task": per_task,
        "predictions": doc,
    }


def measure(folder: Path, bootstrap: int, methods: list[str]) -> dict:
    """Fit each split by each method, predict its held-out rung; time the default fit on the 16 runs."""
    everything = read_olmo_ladder(folder)
    splits: dict = {}
    seconds = None
    for split, (sizes, held) in SPLITS.items():
        runs = read_olmo_ladder(folder, sizes=sizes, multiples=MULTIPLES)
        for method in methods:
            start = time.perf_counter()
            laws = tasks.fit(runs, MAIN_TASKS, bootstrap=bootstrap, seed=0, method=method)
            if split == "3B_from_16_runs" and method == "default":
                seconds, fitted = time.perf_counter() - start, laws
            splits.setdefault(split, {})[method] = evaluate(laws, everything, held)
    main = splits["3B_from_16_runs"]["default"]
    return {
        "benchmark": "task_ladder",
        "tasks": len(MAIN_TASKS),
        "bootstrap": bootstrap,
        "seconds": round(seconds, 2),
        "target_seconds": 60,
        "fit_runs": len(fitted.runs),
        "default_method": next(iter(fitted.laws.values())).method,
        "mean_abs_error": main["per_task"],
        "chain_interval_coverage_90": main["coverage_90"],
        "step1_params": {t: law.step1.params for t, law in fitted.laws.items()},
        "bridge_params": {t: law.bridge.params for t, law in fitted.laws.items() if law.bridge is not None},
        "summary": {s: {m: {k: v for k, v in r.items() if k not in ("per_task", "predictions")} for m, r in by.items()}
                    for s, by in splits.items()},
        "splits": splits,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--anchors", default=str(REPO.parent / "shared" / "anchors"), help="the anchors folder")
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--methods", default="paper,default,auto",
                    help="step-1 methods to compare (default: loss-to-loss where the runs have the general loss)")
    args = parse(ap, smoke=dict(bootstrap=20, methods="default"))
    methods = args.methods.split(",")
    if "default" not in methods:
        methods.append("default")
    with tempfile.TemporaryDirectory() as tmp:
        folder = generated_ladder(Path(tmp)) if args.smoke else Path(args.anchors) / "olmo-ladder" / "ladder-runs"
        emit(measure(folder, args.bootstrap, methods), args.json)


if __name__ == "__main__":
    main()
