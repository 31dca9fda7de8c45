"""Data ablations by merging (Na et al. 2024) against training: on the demo corpus (configs/ablate_demo.gin), each
candidate mixture over the partitions is scored twice: by its merged proxy (the share-weighted average of the
partition models' parameters, `ladderlab ablate`) and by a CPT phase actually trained on it from the same base run
for the partition phases' tokens, fraction, peak rate and schedule. Per validation domain: the Spearman correlation of
proxy and actual losses over the candidates, the mean proxy - actual gap, and the same Spearman for a baseline proxy
without merging (the share-weighted average of the partition models' own losses); and the compute of each route
(FLOPs and seconds). The ladder trains under --out, resumably. JSON to stdout (and --json OUT).
--smoke: a tiny ladder on the quick corpus, 2 partitions, 3 candidates.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from scipy.stats import spearmanr

from ladderlab.config import load_config
from ladderlab.ladders.config import LadderConfig
from ladderlab.ladders.plan import plan
from ladderlab.ladders.runner import run_ladder
from ladderlab.ladders.store import LadderStore
from ladderlab.ladders.variants.merge import ablate, partitions, read_candidates
from ladderlab.scaling.tables.columns import write_csv

from common import emit, parse  # benchmarks/common.py

REPO = Path(__file__).resolve().parents[1]
# shares over the partitions in config order: each 0.7 with the rest 0.1, every pair, every triple, all, one ramp
CANDIDATES = [*(tuple(0.7 if j == i else 0.1 for j in range(4)) for i in range(4)),
              *(tuple(0.5 if j in (a, b) else 0.0 for j in range(4)) for a in range(4) for b in range(a + 1, 4)),
              *(tuple(0.0 if j == i else 1 / 3 for j in range(4)) for i in range(4)), (0.25,) * 4, (0.4, 0.3, 0.2, 0.1)]
SMOKE_SETS = ['DataConfig.corpus = "quick"', "LadderConfig.multiples = (0.1,)", "LadderConfig.evals_per_run = 1",
              "DataConfig.eval_tokens = 1024", 'LadderConfig.mixtures = {"equal": {"code": 1.0, "docs": 1.0}}',
              "LadderConfig.cpt = " + repr({d: {"base": "equal", "mixture": {d: 1.0}, "fraction": 0.5}
                                            for d in ("code", "docs")})]
SMOKE_CANDIDATES = [(0.5, 0.5), (0.8, 0.2), (0.2, 0.8)]


def with_actuals(cfg: LadderConfig, shares: list[tuple[float, ...]]) -> tuple[LadderConfig, list[str]]:
    """`cfg` plus one CPT phase per candidate (`mix<i>`, the partition phases' settings on that mixture), and the
    candidates' ids."""
    _, parts = partitions(cfg)
    first = cfg.cpt[next(iter(parts.values())).mixture]
    ids = [f"mix{i + 1}" for i in range(len(shares))]
    phases = {i: {**first, "mixture": {d: s for d, s in zip(parts, row) if s > 0}} for i, row in zip(ids, shares)}
    return dataclasses.replace(cfg, cpt={**cfg.cpt, **phases}), ids


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    return float(spearmanr(a, b)[0])


def measure(cfg: LadderConfig, out: Path, shares: list[tuple[float, ...]]) -> dict:
    cfg, ids = with_actuals(cfg, shares)
    start = time.perf_counter()
    runs = run_ladder(cfg, out, console=Console(file=io.StringIO()))
    train_s = time.perf_counter() - start
    base, parts = partitions(cfg)
    write_csv(out / "candidates.csv", ["id", *parts], ([i, *row] for i, row in zip(ids, shares)))
    ablation = read_candidates(cfg, out / "candidates.csv")
    doc = ablate(cfg, out, ablation)
    last = {r: runs.rows_of(r)[-1] for r in runs.run_ids}  # each run's final evaluation
    actual_runs = [f"{base.run}-cpt-{i}" for i in ids]
    store = LadderStore(out)
    domains, part_runs = {}, [p.run for p in parts.values()]
    for col, proxy in doc["losses"].items():
        proxy, actual = np.array(proxy), runs[col][[last[r] for r in actual_runs]]
        average = ablation.shares @ runs[col][[last[r] for r in part_runs]]  # no merging: the losses averaged
        domains[col] = {"spearman": spearman(proxy, actual), "spearman_loss_average": spearman(average, actual),
                        "mean_gap": float(np.mean(proxy - actual)),
                        "mean_abs_gap": float(np.mean(np.abs(proxy - actual))),
                        "mean_gap_loss_average": float(np.mean(average - actual))}
    merging = {"flops": doc["flops"]["merging"]["total"], "seconds": doc["seconds"]["merging"]["total"]}
    planned = {r.run: r for r in plan(cfg)}
    trained = {"flops": base.flops + sum(planned[r].flops for r in actual_runs),
               "seconds": store.result(base.run)["seconds"] + sum(store.result(r)["seconds"] for r in actual_runs)}
    return {"N": base.n, "base_run": base.run, "partitions": list(parts), "candidates": len(ids),
            "shares": {i: dict(zip(parts, row)) for i, row in zip(ids, shares)},
            "domains": domains, "mean_spearman": float(np.mean([d["spearman"] for d in domains.values()])),
            "mean_spearman_loss_average": float(np.mean([d["spearman_loss_average"] for d in domains.values()])),
            "compute": {"merging": merging, "actual": trained,
                        "flops_ratio_actual_over_merging": trained["flops"] / merging["flops"]},
            "ladder_train_s": train_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "configs" / "ablate_demo.gin"),
                        help="the ablation ladder: one base run and a CPT phase per partition (four partitions "
                             "for the default candidates)")
    parser.add_argument("--set", action="append", default=[], metavar="BINDING", help="a gin binding for --config")
    parser.add_argument("--out", help="the ladder's results folder (default: a temporary one)")
    parser.add_argument("--candidates", default="default", choices=["default", "smoke"], help=argparse.SUPPRESS)
    args = parse(parser, smoke=dict(set=SMOKE_SETS, candidates="smoke"))
    cfg = load_config(LadderConfig, args.config, args.set)
    shares = CANDIDATES if args.candidates == "default" else SMOKE_CANDIDATES
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        doc = measure(cfg, Path(args.out or tmp), shares)
    emit({**doc, "runtime_s": time.perf_counter() - start}, args.json)


if __name__ == "__main__":
    main()
