"""The growth-operator comparison: every grown run of a `GrowConfig` against the target trained from scratch on the
same tokens in the same order, per seed, with the runs table (`growth_runs.csv`), the speed-up at equal loss with
its interval (`comparison.json`, `scaling.growth.speedup`) and the curves' plot (`growth_curves.png`), in one
results folder, local or on an object store (gs://..., through `paths`)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from rich.console import Console

from ladderlab.config import config_to_dict
from ladderlab.errors import LadderlabError
from ladderlab.ladders.run.train import pipeline_data, train
from ladderlab.ladders.store import read_metrics
from ladderlab.ladders.variants.grow import (DataFn, GrowConfig, compared_domains, grown_run, loss_domains, mean_eval,
                                             parse_run, post_growth_rates, six_n, tokens_per_step)
from ladderlab.model.counts import param_counts
from ladderlab.paths import AnyPath, as_path, write_atomic
from ladderlab.scaling.growth.plot import plot_growth_curves
from ladderlab.scaling.growth.speedup import SPEEDUP_KEYS, speedups_from_csv
from ladderlab.scaling.tables.columns import write_csv

COLUMNS = ["run", "operator", "dim", "g", "d", "N", "n_small", "seed", "step", "D", "flops", "loss"]


def scratch_steps(cfg: GrowConfig) -> int:
    """Steps of the scratch run: those of the small and the grown phase together, so it reads the same tokens."""
    return cfg.growth_steps + cfg.train.steps


def seed_config(cfg: GrowConfig, seed: int) -> GrowConfig:
    """cfg for one seed: the target's init, the data order and the operators' new weights all from `seed`."""
    t = cfg.train
    return dataclasses.replace(cfg, seed=seed, train=dataclasses.replace(
        t, seed=seed, data=dataclasses.replace(t.data, seed=seed)))


def scratch_run(cfg: GrowConfig, out: str | AnyPath, data: DataFn | None = None,
                devices: list[Any] | None = None) -> dict[str, Any]:
    """The target model trained from scratch by the trainer on the whole run's schedule, with its curve in the grown
    runs' format."""
    big = dataclasses.replace(cfg.train, steps=scratch_steps(cfg), run_dir=str(as_path(out) / "scratch"),
                              checkpoint_dir="", wandb_name=f"{as_path(out).name}/scratch")
    batches, eval_sets, bytes_per_token = (data or (lambda: pipeline_data(big)))()
    if not eval_sets:
        raise LadderlabError("grow: the comparison needs eval sets (cfg.train.data.eval_tokens > 0)")
    train(big, batches, eval_sets, bytes_per_token, devices=devices)
    _, evals = read_metrics(as_path(big.run_dir) / "metrics.jsonl")
    per_step, flops_per_token, domains = tokens_per_step(big), six_n(big.model), loss_domains(cfg, evals)
    curve = [{"step": s, "D": s * per_step, "flops": flops_per_token * s * per_step,
              "loss": mean_eval(evals[s], domains)} for s in sorted(evals)]
    n = param_counts(big.model)["non_embedding"]
    return {"run": "scratch", "operator": "scratch", "dim": "", "g": 1, "param_ratio": 1.0, "d": 0, "N": n,
            "n_small": 0, "domains": domains, "curve": curve}


def compare(cfg: GrowConfig, out: str | AnyPath, data: DataFn | None = None, devices: list[Any] | None = None,
            console: Console | None = None) -> dict[str, Any]:
    """Every run of cfg.runs for every seed of cfg.seeds (in out/seed<s>/, resuming finished ones),
    `growth_runs.csv` (one row per eval point), the speed-up table against scratch and `growth_curves.png`. Runs
    tracked by W&B (cfg.train.wandb_project) are each a W&B run named <seed folder>/<run folder>, in the group
    cfg.train.wandb_group (default "grow/<out's name>").
    Returns {"rows": [one per run], "speedups": {run: {speedup, lo, hi, significant}}, "growth_runs", "plot"}."""
    out, console = as_path(out), console or Console()
    names = list(dict.fromkeys(cfg.runs))
    if "scratch" not in names:
        raise LadderlabError("runs: the comparison needs a 'scratch' run")
    parsed = {name: parse_run(name) for name in names}  # names, schedules and shapes checked before anything is written
    for name, (_, _, schedule) in parsed.items():
        if name != "scratch":
            post_growth_rates(cfg, schedule)
    if not cfg.seeds or len(set(cfg.seeds)) != len(cfg.seeds):
        raise LadderlabError(f"seeds={cfg.seeds}: give one or more distinct seeds")
    if cfg.train.wandb_project and not cfg.train.wandb_group:  # tracked: the comparison's runs are one W&B group
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, wandb_group=f"grow/{out.name}"))
    _claim(out, cfg)
    docs = []
    for seed in cfg.seeds:
        run_cfg, where = seed_config(cfg, seed), out / f"seed{seed}"
        seed_data = _compared_evals(run_cfg, data)
        for name, (operator, dim, schedule) in parsed.items():
            doc = (scratch_run(run_cfg, where, seed_data, devices) if name == "scratch"
                   else grown_run(run_cfg, operator, dim, where, seed_data, devices, post_growth=schedule))
            docs.append({**doc, "seed": seed})
            console.print(f"seed {seed} {name}: final eval loss {doc['curve'][-1]['loss']:.4f}")
    write_csv(out / "growth_runs.csv", COLUMNS, ([doc[c] for c in COLUMNS[:8]] + [row[c] for c in COLUMNS[8:]]
                                                 for doc in docs for row in doc["curve"]))
    speedups = speedups_from_csv(out / "growth_runs.csv")
    rows = [_row(name, [d for d in docs if d["run"] == name], speedups.get(name)) for name in names]
    plot = out / "growth_curves.png"
    plot_growth_curves(docs, plot, f"{out}: eval loss on {', '.join(docs[0]['domains'])}")
    summary = {"rows": rows, "speedups": {k: {f: v[f] for f in SPEEDUP_KEYS} for k, v in speedups.items()},
               "growth_runs": str(out / "growth_runs.csv"), "plot": str(plot)}
    write_atomic(out / "comparison.json", json.dumps(summary, indent=1))
    return summary


def _row(name: str, docs: list[dict], sp: dict[str, Any] | None) -> dict[str, Any]:
    """The table row of one run: g and the parameter ratio, d, final loss (mean over seeds), its speed-up."""
    first = docs[0]
    row = {"run": name, "g": first["g"], "param_ratio": first["param_ratio"], "d": first["d"],
           "seeds": len(docs), "final_loss": sum(d["curve"][-1]["loss"] for d in docs) / len(docs),
           "flops": first["curve"][-1]["flops"]}
    if sp is None:  # scratch
        return {**row, "speedup": 0.0, "lo": 0.0, "hi": 0.0, "significant": False, "interval": ""}
    return {**row, **{k: sp[k] for k in ("speedup", "lo", "hi", "significant", "interval", "loss",
                                         "flops_scratch", "flops_grown")}}


def _compared_evals(cfg: GrowConfig, data: DataFn | None) -> DataFn:
    """The data of one seed's runs, its eval sets cut to the compared domains (cfg.compare_on) to save eval time."""
    def make():
        batches, eval_sets, bytes_per_token = (data or (lambda: pipeline_data(cfg.train)))()
        if eval_sets and cfg.compare_on == "trained":
            eval_sets = {d: eval_sets[d] for d in compared_domains(cfg.train, list(eval_sets))}
        return batches, eval_sets, bytes_per_token
    return make


def _claim(out: AnyPath, cfg: GrowConfig) -> None:
    """Make `out` this comparison's folder (grow.json holds its config); refuse one written by another config,
    whose finished runs would otherwise be reused. Only the lists of runs and seeds may change, and a config field
    added since the folder was written counts as unchanged while it holds its default (those runs used it)."""
    doc, path = _claimed_doc(cfg), out / "grow.json"
    if path.is_file():
        stored = json.loads(path.read_text())
        if _with_defaults(stored, _claimed_doc(GrowConfig()), doc) != doc:
            raise LadderlabError(f"{out}: holds growth runs of another config (see {path}); pick a new --out")
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(doc, indent=1))


def _claimed_doc(cfg: GrowConfig) -> dict[str, Any]:
    """cfg as grow.json holds it (JSON values), without what may differ between a folder's calls."""
    doc = {k: v for k, v in config_to_dict(cfg).items() if k not in ("runs", "seeds", "seed")}
    doc["train"] = {k: v for k, v in doc["train"].items() if k not in ("progress", "run_dir", "seed")}
    doc["train"]["data"] = {k: v for k, v in doc["train"]["data"].items() if k != "seed"}
    return json.loads(json.dumps(doc))


def _with_defaults(stored: dict, defaults: dict, current: dict) -> dict:
    """`stored` with the keys it lacks (fields added since it was written) filled from `defaults`, level by level
    wherever `current` has them."""
    out = dict(stored)
    for key, value in current.items():
        if key not in stored:
            out[key] = defaults.get(key)
        elif isinstance(value, dict) and isinstance(stored[key], dict):
            out[key] = _with_defaults(stored[key], defaults.get(key) or {}, value)
    return out
