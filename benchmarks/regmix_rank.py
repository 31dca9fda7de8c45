"""Rank held-out RegMix mixtures: 5-fold cross-validated Spearman of the plain mixing law, the log-feature law and
LightGBM (as RegMix used; benchmark-only dependency) on the 512 1M-parameter runs, per validation domain.

Usage: python benchmarks/regmix_rank.py [--anchors DIR] [--domains pile_cc,github] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from ladderlab.scaling.mixing import cv_scores, folds_of, out_of_fold
from ladderlab.scaling.mixing_law import MixingLaw
from ladderlab.scaling.mixture_table import read_mixture_table

ANCHORS = Path(__file__).resolve().parents[2] / "shared" / "anchors" / "regmix-sail-sg" / "data"


def lightgbm_oof(r_NxM: np.ndarray, y: np.ndarray, fold: np.ndarray, seed: int) -> np.ndarray:
    """RegMix's regressor settings: gbdt, learning rate 0.01, 1000 rounds (no early stopping on the held-out fold)."""
    import lightgbm as lgb

    params = dict(objective="regression", learning_rate=0.01, num_leaves=31, seed=seed, num_threads=1, verbose=-1)
    pred = np.empty_like(y)
    for f in np.unique(fold):
        held = fold == f
        booster = lgb.train(params, lgb.Dataset(r_NxM[~held], y[~held]), num_boost_round=1000)
        pred[held] = booster.predict(r_NxM[held])
    return pred


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--anchors", type=Path, default=ANCHORS)
    ap.add_argument("--domains", default="", help="comma-separated validation domains (default: all 13)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", metavar="OUT")
    args = ap.parse_args()
    table = read_mixture_table(args.anchors / "train_mixture_1m.csv", args.anchors / "train_pile_loss_1m.csv", on="index")
    props = {d.removeprefix("train_the_pile_"): v for d, v in table.proportions.items()}
    domains = list(props)
    r_NxM = np.stack(list(props.values()), axis=1)
    fold = folds_of(len(table.ids), 5, args.seed)
    wanted = [d for d in args.domains.split(",") if d]
    results = {}
    for col, y in table.losses.items():
        name = col.removeprefix("metric/the_pile_").removesuffix("_val_loss")
        if wanted and name not in wanted:
            continue
        row = {}
        for label, law in (("plain", MixingLaw(domains, "linear")), ("log", MixingLaw(domains, "log"))):
            t0 = time.perf_counter()
            row[label] = {**cv_scores(out_of_fold(law, props, y, fold), y), "seconds": time.perf_counter() - t0}
        t0 = time.perf_counter()
        row["lightgbm"] = {**cv_scores(lightgbm_oof(r_NxM, y, fold, args.seed), y), "seconds": time.perf_counter() - t0}
        results[name] = row
        print(name, {k: round(v["spearman"], 4) for k, v in row.items()}, flush=True)
    mean = {m: float(np.mean([r[m]["spearman"] for r in results.values()])) for m in ("plain", "log", "lightgbm")}
    doc = {"benchmark": "regmix_rank", "runs": len(table.ids), "folds": 5, "seed": args.seed,
           "metric": "Spearman of pooled out-of-fold predictions", "mean_spearman": mean, "domains": results}
    print(json.dumps(doc, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()
