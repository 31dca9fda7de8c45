"""A WSD ladder with decay branches against the equivalent cosine ladder, trained on this CPU (configs/ladder_wsd.gin):
the same laws fitted from each (Chinchilla on the runs' final losses; the annealing law with a size term on every
logged step), their predictions of a held-out larger run trained with each schedule, and the compute each ladder
needed (6ND FLOPs as planned, and measured seconds). The four ladders (wsd, cosine, held-wsd, held-cosine) train
under --out, resumably: a second call only refits. JSON to stdout (and --json OUT).
--smoke: two tiny sizes and a tiny held-out size on the quick corpus.
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

from ladderlab.config import load_config
from ladderlab.ladders.config import LadderConfig
from ladderlab.ladders.plan import branch_saving, plan
from ladderlab.ladders.runner import run_ladder
from ladderlab.ladders.store import LadderStore
from ladderlab.scaling.api import fit
from ladderlab.scaling.laws.annealing import final_predictions, fit_curves
from ladderlab.scaling.tables.curves import curves_from_runs
from ladderlab.scaling.tables.runs import Runs

from common import emit, parse  # benchmarks/common.py

REPO = Path(__file__).resolve().parents[1]
SMOKE_SETS = ['DataConfig.corpus = "quick"', 'LadderConfig.mixtures = {"equal": {}}',
              "LadderConfig.sizes = (3e3, 1.25e4)", "LadderConfig.multiples = (0.1, 0.2, 0.4)",
              "DataConfig.eval_tokens = 2048", "LadderConfig.evals_per_run = 2"]


def ladders(cfg: LadderConfig, held_size: float, held_multiple: float) -> dict[str, LadderConfig]:
    """The WSD ladder, its cosine twin (the same runs trained separately), and the held-out run with each schedule."""
    held = dataclasses.replace(cfg, sizes=(held_size,), shapes={}, multiples=(held_multiple,), branches=False)
    return {"wsd": cfg, "cosine": dataclasses.replace(cfg, schedule="cosine", branches=False),
            "held-wsd": held, "held-cosine": dataclasses.replace(held, schedule="cosine")}


def finals(runs: Runs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """N, D and loss of each run's last row."""
    last = [runs.rows_of(r)[-1] for r in runs.run_ids]
    return runs["N"][last], runs["D"][last], runs["loss"][last]


def seconds(folder: Path) -> float:
    """Training seconds the ladder's runs recorded (a decay-branch group's time is shared among its runs)."""
    store = LadderStore(folder)
    return float(sum(store.result(r["run"])["seconds"] for r in store.meta()["plan"]))


def measure(cfgs: dict[str, LadderConfig], out: Path) -> dict:
    quiet = Console(file=io.StringIO())
    tables = {name: run_ladder(cfg, out / name, console=quiet) for name, cfg in cfgs.items()}
    held = {name: curves_from_runs(tables[f"held-{name}"], "loss")[0] for name in ("wsd", "cosine")}
    doc = {"held_out": {name: {"N": c.n, "D": float(finals(tables[f"held-{name}"])[1][0]), "loss": float(c.loss[-1])}
                        for name, c in held.items()}}
    for name in ("wsd", "cosine"):
        n, d, y = finals(tables[name])
        chin = fit("chinchilla", {"N": n, "D": d}, y)
        curves = curves_from_runs(tables[name], "loss")
        ann = fit_curves(curves)
        spent = branch_saving(plan(cfgs[name]))
        pred = {}
        for target, curve in held.items():
            actual = doc["held_out"][target]
            got = final_predictions(ann, [curve])
            laws = {"chinchilla": float(chin.predict(N=actual["N"], D=actual["D"])[0]),
                    "annealing": float(got["pred"][0])}
            pred[target] = {**laws, **{f"{k}_error_pct": v / actual["loss"] * 100 - 100 for k, v in laws.items()}}
        doc[name] = {"runs": len(curves), "flops": spent["flops"], "flops_if_separate": spent["separate_flops"],
                     "seconds": seconds(out / name), "chinchilla": chin.params, "annealing": ann.params,
                     "annealing_lam": ann.law.lam, "predictions": pred}
    doc["flops_ratio_wsd_to_cosine"] = doc["wsd"]["flops"] / doc["cosine"]["flops"]
    return doc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "configs" / "ladder_wsd.gin"), help="the WSD ladder")
    parser.add_argument("--set", action="append", default=[], metavar="BINDING", help="a gin binding for --config")
    parser.add_argument("--held-size", type=float, default=7.4e4, help="the held-out run's non-embedding parameters")
    parser.add_argument("--held-multiple", type=float, default=2.0, help="the held-out run's tokens (xC)")
    parser.add_argument("--out", help="the ladders' results folder (default: a temporary one)")
    args = parse(parser, smoke=dict(set=SMOKE_SETS, held_size=3.4e4, held_multiple=0.2))
    cfg = load_config(LadderConfig, args.config, args.set)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        doc = measure(ladders(cfg, args.held_size, args.held_multiple), Path(args.out or tmp))
    emit({**doc, "runtime_s": time.perf_counter() - start}, args.json)


if __name__ == "__main__":
    main()
