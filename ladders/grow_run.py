"""Growth runs: train a small model for d tokens (the trainer, in its own run folder), grow it with one operator,
keep training the grown model on the same data stream; and the operator comparison against a scratch run.

The trainer starts only from its own init or a saved checkpoint's parameters (`init_from`), and cannot apply
G_random's masks nor grown optimizer moments, so the grown phase runs here in a compact loop of the trainer's own
pieces (optimizer, schedule, loss, metrics log), on one device. Each grown run writes `result.json` with its curve:
tokens and FLOPs (6N per token, both phases and G_learn's map training counted) and the mean eval loss over domains
at each eval point, starting right after growth.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from pathlib import Path
from typing import Any, Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np
import optax
from rich.console import Console

from ladderlab.config import config_to_dict
from ladderlab.errors import LadderlabError
from ladderlab.ladders.config import TrainConfig
from ladderlab.ladders.grow_config import GrowConfig
from ladderlab.ladders.ladder_store import read_metrics, write_atomic
from ladderlab.ladders.metrics import RunLog
from ladderlab.ladders.state import abstract_model
from ladderlab.ladders.step import BATCH_KEYS, eval_sums, make_optimizer, token_sums
from ladderlab.ladders.train import evaluate as train_evaluate
from ladderlab.ladders.train import train
from ladderlab.model.counts import param_counts
from ladderlab.model.growth import (OPERATORS, LearnSetup, grow, grow_moments, growth_factor, mask_ramp, masked,
                                    small_model)
from ladderlab.scaling.growth_speedup import comparison_rows

# () -> (train batches iterator, eval sets {domain: [batch]}, bytes per token or None); a fresh stream per call
DataFn = Callable[[], tuple[Iterator, dict[str, list[dict]], dict[str, float] | None]]


def pipeline_data(cfg: TrainConfig) -> DataFn:
    """The data pipeline's stream for cfg.data (the default)."""
    from ladderlab.data import pipeline

    def make():
        return (pipeline.train_batches(cfg.data, cfg.batch_size), pipeline.eval_batches(cfg.data, cfg.eval_batch_size),
                pipeline.eval_bytes_per_token(cfg.data))
    return make


def parse_run(name: str) -> tuple[str, str]:
    """'direct:depth' -> ('direct', 'depth'); 'scratch' -> ('scratch', '')."""
    if name == "scratch":
        return name, ""
    operator, _, dim = name.partition(":")
    if operator not in OPERATORS or dim not in ("depth", "width"):
        raise LadderlabError(f"runs: {name!r}: expected 'scratch' or OPERATOR:DIM with OPERATOR in "
                             f"{', '.join(OPERATORS)} and DIM depth or width")
    return operator, dim


def _tokens_per_step(cfg: TrainConfig) -> int:
    return cfg.batch_size * cfg.data.seq_len


def _six_n(model) -> float:
    return 6.0 * param_counts(model)["non_embedding"]


def small_train_config(cfg: GrowConfig, dim: str, out: Path) -> TrainConfig:
    """The small model's run: the target's run with the small model, growth_steps steps and its own folder."""
    t = cfg.train
    return dataclasses.replace(t, model=small_model(t.model, cfg.growth_factor, dim), steps=cfg.growth_steps,
                               warmup_steps=min(t.warmup_steps, cfg.growth_steps), run_dir=str(out / f"small-{dim}"),
                               checkpoint_dir="", eval_every=0, keep_last=1, keep_every=0)


def grown_run(cfg: GrowConfig, operator: str, dim: str, out: str | Path, data: DataFn | None = None,
              devices: list[Any] | None = None) -> dict[str, Any]:
    """One growth variant of a run: the small model for d tokens, grow, cfg.train.steps more. Returns (and writes
    to out/<operator>-<dim>/result.json) {run, operator, dim, g, d, N, n_small, curve: [{step, D, flops, loss}]}."""
    out = Path(out)
    run_dir = out / f"{operator}-{dim}"
    if (run_dir / "result.json").is_file():
        return json.loads((run_dir / "result.json").read_text())
    big = cfg.train
    if operator == "learn" and cfg.opt_state == "grow":
        raise LadderlabError("opt_state='grow' with operator 'learn': G_learn's maps cannot grow Adam's moments; "
                             "use opt_state='fresh'")
    if big.grad_accum != 1:
        raise LadderlabError(f"grow: grad_accum={big.grad_accum}: growth runs train the grown model without accumulation")
    small = small_train_config(cfg, dim, out)
    data = data or pipeline_data(big)
    batches, eval_sets, bytes_per_token = data()
    # Trains the small model, or (when its folder holds the final checkpoint) restores it and rewinds `batches`.
    state = jax.device_get(train(small, batches, eval_sets, bytes_per_token, devices=devices)["state"])
    learn = LearnSetup(_mean_loss(big), _device_batches(batches), cfg.learn_steps, cfg.learn_lr)
    grown = grow(state["params"], small.model, big.model, operator, order=cfg.order, seed=cfg.seed, learn=learn)
    optimizer, _ = make_optimizer(big)
    opt = optimizer.init(grown.params)
    if cfg.opt_state == "grow":
        opt = _grow_opt_state(opt, state["opt"], lambda t: grow_moments(t, small.model, big.model, operator,
                                                                      order=cfg.order, seed=cfg.seed))
    per_step = _tokens_per_step(big)
    d = cfg.growth_steps * per_step
    spent = _six_n(small.model) * d + (_six_n(big.model) * cfg.learn_steps * per_step if operator == "learn" else 0.0)
    curve = _train_grown(big, grown.params, grown.masks, opt, cfg.mask_steps if operator == "random" else 0,
                         batches, eval_sets, bytes_per_token, run_dir)
    for row in curve:
        row["D"] = d + row["step"] * per_step
        row["flops"] = spent + _six_n(big.model) * row["step"] * per_step
    doc = {"run": f"{operator}:{dim}", "operator": operator, "dim": dim, "g": growth_factor(small.model, big.model),
           "d": d, "N": param_counts(big.model)["non_embedding"], "n_small": param_counts(small.model)["non_embedding"],
           "order": cfg.order if (operator, dim) == ("direct", "depth") else "", "opt_state": cfg.opt_state,
           "curve": curve}
    write_atomic(run_dir / "result.json", json.dumps(doc))
    return doc


def scratch_steps(cfg: GrowConfig) -> int:
    """Steps that give the scratch run the FLOPs of the costliest grown run (small-model phase counted; G_learn's
    map training is counted in its own curve, not here)."""
    t, dims = cfg.train, {parse_run(name)[1] for name in cfg.runs} - {""}
    small = max((_six_n(small_model(t.model, cfg.growth_factor, dim)) for dim in dims), default=0.0)
    return t.steps + math.ceil(cfg.growth_steps * small / _six_n(t.model))


def scratch_run(cfg: GrowConfig, out: str | Path, data: DataFn | None = None,
                devices: list[Any] | None = None) -> dict[str, Any]:
    """The target model trained from scratch by the trainer, with its curve in the grown runs' format."""
    big = dataclasses.replace(cfg.train, steps=scratch_steps(cfg), run_dir=str(Path(out) / "scratch"), checkpoint_dir="")
    batches, eval_sets, bytes_per_token = (data or pipeline_data(big))()
    if not eval_sets:
        raise LadderlabError("grow: the comparison needs eval sets (cfg.train.data.eval_tokens > 0)")
    train(big, batches, eval_sets, bytes_per_token, devices=devices)
    _, evals = read_metrics(Path(big.run_dir) / "metrics.jsonl")
    per_step, six_n = _tokens_per_step(big), _six_n(big.model)
    curve = [{"step": s, "D": s * per_step, "flops": six_n * s * per_step, "loss": _mean_eval(evals[s])}
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
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(cols)
        for doc in docs:
            for row in doc["curve"]:
                writer.writerow([doc[c] for c in cols[:7]] + [row[c] for c in cols[7:]])


def _mean_eval(row: dict[str, float]) -> float:
    return float(np.mean([v for k, v in row.items() if k.endswith("/loss")]))


def _mean_loss(cfg: TrainConfig) -> Callable[[dict, dict], jax.Array]:
    """params, batch -> mean cross-entropy per real token of the model cfg.model (G_learn's objective)."""
    graphdef, _ = abstract_model(cfg.model)

    def loss(params, batch):
        _, (ce, _, tokens) = token_sums(graphdef, params, batch)
        return ce / jnp.maximum(tokens, 1.0)
    return loss


def _device_batches(batches: Iterator) -> Iterator[dict]:
    while True:
        batch = next(batches)
        yield {k: jnp.asarray(batch[k]) for k in BATCH_KEYS}


def _grow_opt_state(fresh: Any, small: Any, grow_tree: Callable[[dict], dict]) -> Any:
    """The grown model's optimizer state: Adam's moments grown like the weights and its step count kept;
    everything else (schedule counters) fresh, so the grown model's schedule starts at step 0."""
    if hasattr(fresh, "_fields") and {"mu", "nu", "count"} <= set(fresh._fields):
        return fresh._replace(mu=grow_tree(small.mu), nu=grow_tree(small.nu), count=jnp.asarray(small.count))
    if isinstance(fresh, tuple):
        parts = [_grow_opt_state(f, s, grow_tree) for f, s in zip(fresh, small)]
        return type(fresh)(*parts) if hasattr(fresh, "_fields") else tuple(parts)
    return fresh


def _train_grown(cfg: TrainConfig, params: dict, masks: dict | None, opt: Any, mask_steps: int, batches: Iterator,
                 eval_sets: dict[str, list[dict]], bytes_per_token: dict[str, float] | None,
                 run_dir: Path) -> list[dict[str, float]]:
    """cfg.steps AdamW steps of the grown model (masks ramped over mask_steps); eval at step 0, every
    cfg.eval_every steps and at the end. Returns [{step, loss}] (mean eval loss over domains)."""
    optimizer, schedule = make_optimizer(cfg)
    graphdef, _ = abstract_model(cfg.model)

    @jax.jit
    def step(state, batch):
        c = mask_ramp(state["step"], mask_steps)
        grad_fn = jax.value_and_grad(lambda p: token_sums(graphdef, masked(p, masks, c), batch, cfg.z_loss), has_aux=True)
        (_, (ce, _, tokens)), grads = grad_fn(state["params"])
        grads = jax.tree.map(lambda g: g / jnp.maximum(tokens, 1.0), grads)
        updates, opt = optimizer.update(grads, state["opt"], state["params"])
        metrics = {"loss": ce / jnp.maximum(tokens, 1.0), "grad_norm": optax.tree.norm(grads),
                   "lr": schedule(state["step"]), "loss_tokens": tokens, "mask": c}
        return {"params": optax.apply_updates(state["params"], updates), "opt": opt, "step": state["step"] + 1}, metrics

    @jax.jit
    def masked_eval(params, step_count, batch):
        return eval_sums(graphdef, masked(params, masks, mask_ramp(step_count, mask_steps)), batch)

    def evaluate(state) -> dict[str, float]:
        eval_step = lambda params, batch: masked_eval(params, state["step"], batch)  # noqa: E731
        return {k: float(v) for k, v in train_evaluate(eval_step, state["params"], eval_sets, bytes_per_token).items()}

    run_dir.mkdir(parents=True, exist_ok=True)
    state = {"params": params, "opt": opt, "step": jnp.zeros((), jnp.int32)}
    log, curve = RunLog(run_dir, 0, cfg.steps, _tokens_per_step(cfg), cfg.progress), []
    try:
        for s in range(cfg.steps + 1):
            if s == 0 or s == cfg.steps or (cfg.eval_every > 0 and s % cfg.eval_every == 0):
                evals = evaluate(state)
                log.eval(s, evals)
                curve.append({"step": s, "loss": _mean_eval(evals)})
            if s == cfg.steps:
                break
            state, metrics = step(state, {k: jnp.asarray(v) for k, v in next(batches).items() if k in BATCH_KEYS})
            metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
            if not math.isfinite(metrics["loss"]):
                raise LadderlabError(f"{run_dir}: step {s + 1}: loss is {metrics['loss']}; stopping")
            if (s + 1) % cfg.log_every == 0 or s + 1 == cfg.steps:
                log.train(s + 1, metrics)
    finally:
        log.close()
    return curve
