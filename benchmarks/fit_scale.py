"""Fit time and peak memory of a Chinchilla fit (`ladderlab fit chinchilla --bootstrap 0`) as the table grows.

Each fit runs in its own process (peak RSS from getrusage is per process) on a seeded synthetic table: N log-uniform
in [1e7, 1e10], D/N log-uniform in [2, 200], the Chinchilla paper's law times 1% lognormal noise. "after": the
engine's defaults (starts screened and refined on a 2,048-row subsample, polished on every row; blocks of at most
65,536 starts x rows). "before": the old engine's way, every start screened on every row in one array
(screen_rows=None, unbounded blocks), measured only where affordable (it needs ~22 GB at 100k rows) and quoted from
issue 15 for the rest. --smoke: 300 and 3,000 rows after, 300 before.
Usage: python benchmarks/fit_scale.py [--sizes 1000,10000,100000,1000000] [--before 1000,10000] [--json OUT] [--smoke]
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import time

import numpy as np

from common import emit, parse  # benchmarks/common.py

TRUTH = dict(A=406.4, B=410.7, E=1.69, alpha=0.34, beta=0.28)  # Hoffmann et al.'s fit
BEFORE_MAX_ROWS = 10_000  # the old engine holds 4,500 starts x rows several times over: 2.2 GB at 10k rows
QUOTED = {  # issue 15: `ladderlab fit chinchilla --bootstrap 0` on synthetic tables, before this engine
    "source": "issue 15 (ladderlab fit chinchilla --bootstrap 0, synthetic tables)",
    "sizes": [{"rows": 1000, "fit_s": 2.6, "peak_gb": 0.3}, {"rows": 10000, "fit_s": 13.0, "peak_gb": 2.2},
              {"rows": 100000, "fit_s": 112.0, "peak_gb": 21.6}],
}


def table(rows: int, seed: int = 0) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The synthetic runs table: inputs {N, D} and noisy losses."""
    from ladderlab.scaling.laws.chinchilla import Chinchilla

    rng = np.random.default_rng(seed)
    n = np.exp(rng.uniform(np.log(1e7), np.log(1e10), rows))
    x = {"N": n, "D": n * np.exp(rng.uniform(np.log(2.0), np.log(200.0), rows))}
    law = Chinchilla()
    clean = law.predict_batch(law.to_internal(TRUTH)[None, :], x)[0]
    return x, clean * np.exp(rng.normal(0.0, 0.01, rows))


def child(rows: int, mode: str) -> dict:
    """One fit in this process: its time, this process's peak RSS, and the optimum."""
    from ladderlab.scaling.engine.law import fit_law
    from ladderlab.scaling.laws.chinchilla import Chinchilla

    x, y = table(rows)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    old = dict(screen_rows=None, max_elements=2**62) if mode == "before" else {}
    start = time.perf_counter()
    fitted = fit_law(Chinchilla(), x, y, **old)
    fit_s = time.perf_counter() - start
    return {"rows": rows, "fit_s": fit_s, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "rss_before_fit_mb": rss_before, "objective": fitted.objective, "params": fitted.params,
            "warnings": fitted.warnings}


def measure(rows: int, mode: str) -> dict:
    """`child` in a fresh interpreter."""
    done = subprocess.run([sys.executable, __file__, "--child", str(rows), mode], capture_output=True, text=True,
                          check=False)
    if done.returncode:
        sys.exit(f"fit_scale: {mode} fit of {rows} rows failed: {done.stderr.strip()[-500:]}")
    return json.loads(done.stdout)


def sizes(text: str) -> list[int]:
    return [int(float(s)) for s in text.split(",") if s]


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        print(json.dumps(child(int(sys.argv[2]), sys.argv[3])))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,10000,100000,1000000", help="table rows for the new engine")
    ap.add_argument("--before", default="1000,10000", help=f"table rows for the old engine (at most {BEFORE_MAX_ROWS})")
    args = parse(ap, smoke=dict(sizes="300,3000", before="300"))
    after, before = sizes(args.sizes), sizes(args.before)
    if max(before, default=0) > BEFORE_MAX_ROWS:
        ap.error(f"--before {args.before}: the old engine needs ~22 GB at 100k rows; at most {BEFORE_MAX_ROWS} rows")

    from ladderlab.scaling.engine.law import SCREEN_ROWS
    from ladderlab.scaling.engine.minimize import MAX_ELEMENTS

    new = [measure(n, "after") for n in after]
    old = [measure(n, "before") for n in before]
    same = []
    for o in old:
        n = next((a for a in new if a["rows"] == o["rows"]), None)
        if n is not None:
            gaps = [abs(n["params"][k] / v - 1) for k, v in o["params"].items()]
            same.append({"rows": o["rows"], "objective_rel_gap": abs(n["objective"] / o["objective"] - 1),
                         "max_param_rel_gap": max(gaps), "speedup": o["fit_s"] / n["fit_s"],
                         "memory_ratio": o["peak_rss_mb"] / n["peak_rss_mb"]})
    big, small = new[-1], new[-2] if len(new) > 1 else new[-1]
    exponent = (math.log(big["fit_s"] / small["fit_s"]) / math.log(big["rows"] / small["rows"])
                if big["rows"] > small["rows"] else float("nan"))
    emit({
        "data": "synthetic Chinchilla tables: N log-uniform in [1e7, 1e10], D/N in [2, 200], 1% lognormal noise",
        "measures": "fit_law(Chinchilla) in a fresh process per size; peak_rss_mb = the process's ru_maxrss",
        "n_starts": 4500, "screen_rows": SCREEN_ROWS, "max_elements": MAX_ELEMENTS,
        "after": new, "before": old, "before_quoted": QUOTED, "same_optimum": same,
        "max_peak_rss_mb": max(r["peak_rss_mb"] for r in new),
        "time_exponent": exponent,  # d log(time) / d log(rows) between the two largest sizes; <= 1: at most linear
    }, args.json)


if __name__ == "__main__":
    main()
