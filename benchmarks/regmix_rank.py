"""Rank held-out RegMix mixtures: 5-fold cross-validated Spearman of the plain mixing law, the log-feature law and
LightGBM (as RegMix used; the `bench` extra, else "baseline": "skipped") on the 512 1M-parameter runs, per
validation domain. --smoke: the first 96 runs' Pile-CC losses in tests/fixtures, 20 boosting rounds.

Usage: python benchmarks/regmix_rank.py [--mixtures CSV] [--losses CSV] [--domains pile_cc,github] [--json OUT]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from types import ModuleType

import numpy as np

from ladderlab.scaling.mixing.law import MixingLaw
from ladderlab.scaling.mixing.model import cv_scores, folds_of, out_of_fold
from ladderlab.scaling.mixing.table import read_mixture_table

from common import emit, parse, peer  # benchmarks/common.py

REPO = Path(__file__).resolve().parents[1]
ANCHORS = REPO.parent / "shared" / "anchors" / "regmix-sail-sg" / "data"
FIXTURES = REPO / "tests" / "fixtures"


def lightgbm_oof(lgb: ModuleType, r_NxM: np.ndarray, y: np.ndarray, fold: np.ndarray, seed: int,
                 rounds: int) -> np.ndarray:
    """RegMix's regressor settings: gbdt, learning rate 0.01, 1000 rounds (no early stopping on the held-out fold)."""
    params = dict(objective="regression", learning_rate=0.01, num_leaves=31, seed=seed, num_threads=1, verbose=-1)
    pred = np.empty_like(y)
    for f in np.unique(fold):
        held = fold == f
        booster = lgb.train(params, lgb.Dataset(r_NxM[~held], y[~held]), num_boost_round=rounds)
        pred[held] = booster.predict(r_NxM[held])
    return pred


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mixtures", type=Path, default=ANCHORS / "train_mixture_1m.csv", help="the runs' mixtures")
    ap.add_argument("--losses", type=Path, default=ANCHORS / "train_pile_loss_1m.csv", help="the runs' losses")
    ap.add_argument("--domains", default="", help="comma-separated validation domains (default: all 13)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=1000, help="LightGBM boosting rounds")
    args = parse(ap, smoke=dict(mixtures=FIXTURES / "regmix_train_mixture_1m_first96.csv",
                                losses=FIXTURES / "regmix_train_pile_cc_loss_1m_first96.csv", rounds=20))
    lgb, baseline = peer("lightgbm")
    table = read_mixture_table(args.mixtures, args.losses, on="index")
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
        row["lightgbm"] = None
        if lgb:
            t0 = time.perf_counter()
            oof = lightgbm_oof(lgb, r_NxM, y, fold, args.seed, args.rounds)
            row["lightgbm"] = {**cv_scores(oof, y), "seconds": time.perf_counter() - t0}
        results[name] = row
        print(name, {k: round(v["spearman"], 4) for k, v in row.items() if v}, flush=True)
    mean = {m: float(np.mean([r[m]["spearman"] for r in results.values()])) if lgb or m != "lightgbm" else None
            for m in ("plain", "log", "lightgbm")}
    doc = {"benchmark": "regmix_rank", "runs": len(table.ids), "folds": 5, "seed": args.seed,
           "baseline": baseline, "lightgbm_rounds": args.rounds, "metric": "Spearman of pooled out-of-fold predictions",
           "mean_spearman": mean, "domains": results}
    emit(doc, args.json)


if __name__ == "__main__":
    main()
