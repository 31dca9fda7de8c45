"""Rank held-out RegMix mixtures and time the fits: 5-fold cross-validated Spearman of the plain mixing law, the
log-feature law, `auto` (whichever of the two predicts held-out runs better, per column) and LightGBM (as RegMix
used; the `bench` extra, else "baseline": "skipped") on the 512 1M-parameter runs, per validation domain; and in the
same run the time of the mixing-law fit of every column (`fit_mixing_model(..., "auto")`: both laws' 5 folds and
final fits) against LightGBM with RegMix's settings fitted once per column. --smoke: the first 96 runs' Pile-CC
losses in tests/fixtures, 20 boosting rounds.

Usage: python benchmarks/regmix_rank.py [--mixtures CSV] [--losses CSV] [--domains pile_cc,github] [--json OUT]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from types import ModuleType

import numpy as np

from ladderlab.scaling.mixing.model import cv_scores, fit_mixing_model, folds_of, model_name
from ladderlab.scaling.mixing.table import read_mixture_table

from common import emit, parse, peer  # benchmarks/common.py

REPO = Path(__file__).resolve().parents[1]
ANCHORS = REPO.parent / "shared" / "anchors" / "regmix-sail-sg" / "data"
FIXTURES = REPO / "tests" / "fixtures"


PARAMS = dict(objective="regression", learning_rate=0.01, num_leaves=31, num_threads=1, verbose=-1)  # RegMix's


def lightgbm_oof(lgb: ModuleType, r_NxM: np.ndarray, y: np.ndarray, fold: np.ndarray, seed: int,
                 rounds: int) -> np.ndarray:
    """RegMix's regressor settings: gbdt, learning rate 0.01, 1000 rounds (no early stopping on the held-out fold)."""
    pred = np.empty_like(y)
    for f in np.unique(fold):
        held = fold == f
        booster = lgb.train({**PARAMS, "seed": seed}, lgb.Dataset(r_NxM[~held], y[~held]), num_boost_round=rounds)
        pred[held] = booster.predict(r_NxM[held])
    return pred


def timed(fn, *args) -> tuple[object, dict[str, float]]:
    """fn(*args) and its wall-clock and CPU seconds."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn(*args)
    return out, {"wall": time.perf_counter() - t0, "cpu": time.process_time() - c0}


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
    r_NxM = np.stack(list(props.values()), axis=1)
    fold = folds_of(len(table.ids), 5, args.seed)  # the folds fit_mixing_model holds out
    wanted = [d for d in args.domains.split(",") if d]
    name = {c: c.removeprefix("metric/the_pile_").removesuffix("_val_loss") for c in table.losses}
    losses = {c: y for c, y in table.losses.items() if not wanted or name[c] in wanted}
    model, seconds = timed(fit_mixing_model, props, losses, "auto", 3, 5, args.seed)
    seconds = {"mixing_law_auto": seconds}
    if lgb:
        _, seconds["lightgbm_fit"] = timed(lambda: [lgb.train({**PARAMS, "seed": args.seed}, lgb.Dataset(r_NxM, y),
                                                              num_boost_round=args.rounds) for y in losses.values()])
    results, lgb_cv = {}, {"wall": 0.0, "cpu": 0.0}
    for col, y in losses.items():
        row = {**model.cv[col], "auto": {"model": model_name(model.laws[col].law), **cv_scores(model.oof[col], y)},
               "lightgbm": None}
        if lgb:
            oof, t = timed(lightgbm_oof, lgb, r_NxM, y, fold, args.seed, args.rounds)
            lgb_cv = {k: lgb_cv[k] + t[k] for k in t}
            row["lightgbm"] = cv_scores(oof, y)
        results[name[col]] = row
        print(name[col], {k: round(v["spearman"], 4) for k, v in row.items() if v}, flush=True)
    if lgb:
        seconds["lightgbm_cv"] = lgb_cv
    mean = {m: float(np.mean([r[m]["spearman"] for r in results.values()])) if lgb or m != "lightgbm" else None
            for m in ("plain", "log", "auto", "lightgbm")}
    ratio = seconds["lightgbm_fit"]["wall"] / seconds["mixing_law_auto"]["wall"] if lgb else None
    print("seconds", {k: {a: round(b, 2) for a, b in v.items()} for k, v in seconds.items()}, flush=True)
    doc = {"benchmark": "regmix_rank", "runs": len(table.ids), "columns": len(losses), "folds": 5, "seed": args.seed,
           "baseline": baseline, "lightgbm_rounds": args.rounds, "metric": "Spearman of pooled out-of-fold predictions",
           "mean_spearman": mean, "seconds": seconds, "lightgbm_over_mixing_law_time": ratio, "domains": results}
    emit(doc, args.json)


if __name__ == "__main__":
    main()
