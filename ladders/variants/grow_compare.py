"""The growth-operator comparison: every grown run of a `GrowConfig` against the target trained from scratch at
equal FLOPs, with the runs table (`growth_runs.csv`) and the speed-up at equal loss (`comparison.json`)."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from ladderlab.config import config_to_dict
from ladderlab.errors import LadderlabError
from ladderlab.ladders.run.train import pipeline_data, train
from ladderlab.ladders.store import read_metrics, write_atomic
from ladderlab.ladders.variants.grow import (DataFn, GrowConfig, grown_run, mean_eval, parse_run, six_n,
                                             tokens_per_step)
from ladderlab.model.counts import param_counts
from ladderlab.model.growth.operators import small_model
from ladderlab.scaling.growth.speedup import comparison_rows
from ladderlab.scaling.tables.columns import write_csv


def scratch_steps(cfg: GrowConfig) -> int:
    """Steps that give the scratch run the FLOPs of the costliest grown run (small-model phase counted; G_learn's
    map training is counted in its own curve, not here)."""
    t, dims = cfg.train, {parse_run(name)[1] for name in cfg.runs} - {""}
    small = max((six_n(small_model(t.model, cfg.growth_factor, dim)) for dim in dims), default=0.0)
    return t.steps + math.ceil(cfg.growth_steps * small / six_n(t.model))


def scratch_run(cfg: GrowConfig, out: str | Path, data: DataFn | None = None,
                devices: list[Any] | None = None) -> dict[str, Any]:
    """The target model trained from scratch by the trainer, with its curve in the grown runs' format."""
    big = dataclasses.replace(cfg.train, steps=scratch_steps(cfg), run_dir=str(Path(out) / "scratch"), checkpoint_dir="")
    batches, eval_sets, bytes_per_token = (data or (lambda: pipeline_data(big)))()
    if not eval_sets:
        raise LadderlabError("grow: the comparison needs eval sets (cfg.train.data.eval_tokens > 0)")
    train(big, batches, eval_sets, bytes_per_token, devices=devices)
    _, evals = read_metrics(Path(big.run_dir) / "metrics.jsonl")
    per_step, flops_per_token = tokens_per_step(big), six_n(big.model)
    curve = [{"step": s, "D": s * per_step, "flops": flops_per_token * s * per_step, "loss": mean_eval(evals[s])}
             for s in sorted(evals)]
    return {"run": "scratch", "operator": "scratch", "dim": "", "g": 1.0, "d": 0,
            "N": param_counts(big.model)["non_embedding"], "n_small": 0, "curve": curve}


def compare(cfg: GrowConfig, out: str | Path, data: DataFn | None = None, devices: list[Any] | None = None,
            console: Console | None = None) -> dict[str, Any]:
    """Every run of cfg.runs (resuming finished ones), `growth_runs.csv` (one row per eval point) and the speed-up
    table at equal loss against the scratch run."""
    out, console = Path(out), console or Console()
    names = list(dict.fromkeys(cfg.runs))
    if "scratch" not in names:
        raise LadderlabError("runs: the comparison needs a 'scratch' run")
    parsed = {name: parse_run(name) for name in names}  # names and shapes checked before anything is written
    scratch_steps(cfg)
    _claim(out, cfg)
    docs = {}
    for name, (operator, dim) in parsed.items():
        docs[name] = (scratch_run(cfg, out, data, devices) if name == "scratch"
                      else grown_run(cfg, operator, dim, out, data, devices))
        console.print(f"{name}: final eval loss {docs[name]['curve'][-1]['loss']:.4f}")
    _write_runs_csv(out / "growth_runs.csv", docs.values())
    curves = {n: (np.array([r["flops"] for r in d["curve"]]), np.array([r["loss"] for r in d["curve"]]))
              for n, d in docs.items()}
    rows = comparison_rows(curves)
    for row in rows:
        doc = docs[row["run"]]
        row.update(operator=doc["operator"], dim=doc["dim"], g=doc["g"], d=doc["d"])
    summary = {"rows": rows, "growth_runs": str(out / "growth_runs.csv")}
    write_atomic(out / "comparison.json", json.dumps(summary, indent=1))
    return summary


def _claim(out: Path, cfg: GrowConfig) -> None:
    """Make `out` this comparison's folder (grow.json holds its config); refuse one written by another config,
    whose finished runs would otherwise be reused. Only the list of runs may change."""
    doc = {k: v for k, v in config_to_dict(cfg).items() if k != "runs"}
    doc["train"] = {k: v for k, v in doc["train"].items() if k not in ("progress", "run_dir")}
    path = out / "grow.json"
    if path.is_file() and json.loads(path.read_text()) != json.loads(json.dumps(doc)):
        raise LadderlabError(f"{out}: holds growth runs of another config (see {path}); pick a new --out")
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(doc, indent=1))


def _write_runs_csv(path: Path, docs) -> None:
    """The runs table of the comparison: run, operator, dim, g, d, N, n_small, step, D, flops, loss."""
    cols = ["run", "operator", "dim", "g", "d", "N", "n_small", "step", "D", "flops", "loss"]
    write_csv(path, cols, ([doc[c] for c in cols[:7]] + [row[c] for c in cols[7:]]
                           for doc in docs for row in doc["curve"]))
