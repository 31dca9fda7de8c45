"""Task scaling laws on the real OLMo ladder: fit on the paper's 16 runs, predict the held-out 3.2B rung; time it.

Fits the 8 tasks' two-step laws with 1,000 bootstrap resamples per step on 190M-1.3B x 1, 2, 5, 10 xC, predicts
the 3.2B runs at each multiple, and reports wall time (target: under 60 s on the 2-core dev machine), per-task
errors of step 1 (task loss) and of the chain and single-step baseline (accuracy points), and the step-1 fits.
JSON to stdout (and --json OUT). --smoke: the same on a generated ladder in the OLMo layout, 20 resamples.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from ladderlab.scaling.tables.olmo import MAIN_TASKS, OLMO_N, TASK_KEYS, acc_column, loss_column, read_olmo_ladder
from ladderlab.scaling.tasks import laws as tasks
from ladderlab.scaling.tasks import report as task_report

from common import emit, parse  # benchmarks/common.py

REPO = Path(__file__).resolve().parents[1]


def generated_ladder(folder: Path) -> Path:
    """OLMo-layout run CSVs (190M-3B x 1, 2, 5, 10 xC, 10 checkpoints each) from a known two-step law plus 1% noise:
    the smoke run's data."""
    rng = np.random.default_rng(0)
    keys = [k for parts in TASK_KEYS.values() for k, _ in parts]
    header = ",".join(["_step", "throughput/total_tokens", *map(loss_column, keys), *map(acc_column, keys)])
    for size in ("190M", "370M", "760M", "1B", "3B"):
        for multiple in (1, 2, 5, 10):
            d = np.linspace(0.1, 1, 10) * multiple * 20 * OLMO_N[size]
            noise = 1 + 0.01 * rng.standard_normal((10, len(keys)))
            loss = (0.8 + 300 / OLMO_N[size] ** 0.3 + 300 / d**0.3)[:, None] * noise
            acc = 0.95 - 0.7 / (1 + np.exp(-3 * (loss - 1.5)))
            rows = np.column_stack([np.arange(1, 11) * 1000, d, loss, acc])
            np.savetxt(folder / f"{size}-{multiple}xC.csv", rows, delimiter=",", header=header, comments="")
    return folder


def measure(folder: Path, bootstrap: int) -> dict:
    """Fit on the 16 runs in `folder`, predict its 3B rung, and time it."""
    start = time.perf_counter()
    everything = read_olmo_ladder(folder)
    runs = read_olmo_ladder(folder, sizes=["190M", "370M", "760M", "1B"], multiples=[1, 2, 5, 10])
    laws = tasks.fit(runs, MAIN_TASKS, bootstrap=bootstrap, seed=0)
    names = [f"3B-{k}xC" for k in (1, 2, 5, 10)]  # at the rung's real final token counts
    targets = [task_report.Target(r, OLMO_N["3B"], float(everything["D"][everything.rows_of(r)[-1]])) for r in names]
    doc = task_report.predictions(laws, targets, everything, 0.9)
    seconds = time.perf_counter() - start

    errors = task_report.error_summary(doc)
    coverage = np.mean([r["acc_lo"] <= r["actual_acc"] <= r["acc_hi"] for rows in doc.values() for r in rows.values()])
    return {
        "benchmark": "task_ladder",
        "tasks": len(MAIN_TASKS),
        "bootstrap": bootstrap,
        "seconds": round(seconds, 2),
        "target_seconds": 60,
        "fit_runs": len(runs.run_ids),
        "targets": [t.name for t in targets],
        "mean_abs_error": errors,
        "chain_interval_coverage_90": float(coverage),
        "step1_params": {t: law.step1.params for t, law in laws.laws.items()},
        "step2_params": {t: law.step2.params for t, law in laws.laws.items()},
        "predictions": doc,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--anchors", default=str(REPO.parent / "shared" / "anchors"), help="the anchors folder")
    ap.add_argument("--bootstrap", type=int, default=1000)
    args = parse(ap, smoke=dict(bootstrap=20))
    with tempfile.TemporaryDirectory() as tmp:
        folder = generated_ladder(Path(tmp)) if args.smoke else Path(args.anchors) / "olmo-ladder" / "ladder-runs"
        emit(measure(folder, args.bootstrap), args.json)


if __name__ == "__main__":
    main()
