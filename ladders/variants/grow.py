"""Growth runs: train a small model for d tokens (the trainer, in its own run folder), grow it with one operator,
keep training the grown model on the same data stream (`GrowConfig` says how; `grow_compare` compares operators).

The grown phase is a run of the one loop (`run.loop.run_loop`) that starts from the grown parameters (and, with
opt_state='grow', grown Adam moments) and computes with G_random's masked parameters (a per-step transform), so it
checkpoints, resumes, shards over cfg.train's mesh and accumulates gradients like any run. Each grown run writes
`result.json` with its curve: tokens and FLOPs (6N per token, both phases and G_learn's map training counted) and
the mean eval loss over domains at each eval point, starting right after growth.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Literal

import jax
import jax.numpy as jnp
import numpy as np

from ladderlab.errors import LadderlabError
from ladderlab.ladders.run.config import TrainConfig
from ladderlab.ladders.store import read_metrics, write_atomic
from ladderlab.ladders.run.loop import run_loop
from ladderlab.ladders.run.state import abstract_model
from ladderlab.ladders.run.step import BATCH_KEYS, token_sums
from ladderlab.ladders.run.train import Trainer, checkpoints_of, pipeline_data, train
from ladderlab.model.counts import param_counts
from ladderlab.model.growth.operators import (LearnSetup, grow, grow_moments, growth_factor, mask_ramp, masked,
                                              parse_operator, small_model)

ALL_RUNS = ("scratch", "direct:depth", "learn:depth", "zero:depth", "random:depth",
            "direct:width", "learn:width", "zero:width", "random:width")


@dataclass(frozen=True)
class GrowConfig:
    """`train` is the target model's run after growth (its `steps` count the grown model's steps); the small model
    trains with the same batch, LR and schedule for `growth_steps` (d = growth_steps x batch x seq_len tokens).
    The scratch run trains the target for as many steps as give it the grown runs' total FLOPs (6N per token)."""

    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    runs: tuple[str, ...] = ALL_RUNS  # "scratch" and "<operator>:<depth|width>"
    growth_factor: int = 4  # g: n_layers / g layers (depth) or every width / sqrt(g) (width)
    growth_steps: int = 50
    order: Literal["stack", "interpolate"] = "stack"  # G_stack's layer order
    opt_state: Literal["fresh", "grow"] = "fresh"  # the grown model's optimizer state
    learn_steps: int = 20  # G_learn: Adam steps fitting the growth maps (their FLOPs are counted)
    learn_lr: float = 1e-3
    mask_steps: int = 20  # G_random: steps over which the masks ramp 0 -> 1
    seed: int = 0  # new weights of the operators (direct-width copy choice, random/zero new entries, learn maps)


# () -> (train batches iterator, eval sets {domain: [batch]}, bytes per token or None); a fresh stream per call
DataFn = Callable[[], tuple[Iterator, dict[str, list[dict]], dict[str, float] | None]]


def parse_run(name: str) -> tuple[str, str]:
    """'direct:depth' -> ('direct', 'depth'); 'scratch' -> ('scratch', '')."""
    if name == "scratch":
        return name, ""
    return parse_operator(name, "runs")


def tokens_per_step(cfg: TrainConfig) -> int:
    return cfg.batch_size * cfg.data.seq_len


def six_n(model) -> float:
    return 6.0 * param_counts(model)["non_embedding"]


def small_train_config(cfg: GrowConfig, dim: str, out: Path) -> TrainConfig:
    """The small model's run: the target's run with the small model, growth_steps steps and its own folder."""
    t = cfg.train
    return dataclasses.replace(t, model=small_model(t.model, cfg.growth_factor, dim), steps=cfg.growth_steps,
                               warmup_steps=min(t.warmup_steps, cfg.growth_steps), run_dir=str(out / f"small-{dim}"),
                               checkpoint_dir="", eval_every=0, keep_last=1, keep_every=0)


def grown_run(cfg: GrowConfig, operator: str, dim: str, out: str | Path, data: DataFn | None = None,
              devices: list[Any] | None = None, stop_after: int | None = None) -> dict[str, Any]:
    """One growth variant of a run: the small model for d tokens, grow, cfg.train.steps more through the one loop
    (checkpoints, resume, cfg.train's mesh and grad_accum; G_random's mask ramp as its parameter transform). Returns
    (and writes to out/<operator>-<dim>/result.json) {run, operator, dim, g, d, N, n_small, curve: [{step, D,
    flops, loss}]}; stop_after: end the grown phase (with a checkpoint) after this step, as a preemption would
    (returning {})."""
    out = Path(out)
    run_dir = out / f"{operator}-{dim}"
    if (run_dir / "result.json").is_file():
        return json.loads((run_dir / "result.json").read_text())
    big = dataclasses.replace(cfg.train, run_dir=str(run_dir), checkpoint_dir="")
    if operator == "learn" and cfg.opt_state == "grow":
        raise LadderlabError("opt_state='grow' with operator 'learn': G_learn's maps cannot grow Adam's moments; "
                             "use opt_state='fresh'")
    small = small_train_config(cfg, dim, out)
    batches, eval_sets, bytes_per_token = (data or (lambda: pipeline_data(big)))()
    # Trains the small model, or (when its folder holds the final checkpoint) restores it and rewinds `batches`;
    # a resumed grown phase grows again (deterministic) for its transform, then restores its own checkpoint.
    state = jax.device_get(train(small, batches, eval_sets, bytes_per_token, devices=devices)["state"])
    learn = LearnSetup(_mean_loss(big), _device_batches(batches), cfg.learn_steps, cfg.learn_lr)
    grown = grow(state["params"], small.model, big.model, operator, order=cfg.order, seed=cfg.seed, learn=learn)
    masks, ramp = jax.device_get(grown.masks), cfg.mask_steps if operator == "random" else 0
    trainer = Trainer(big, devices, None if masks is None else lambda p, step: masked(p, masks, mask_ramp(step, ramp)))
    opt = None
    if cfg.opt_state == "grow":
        opt = _grow_opt_state(trainer.optimizer.init(grown.params), state["opt"],
                              lambda t: grow_moments(t, small.model, big.model, operator, order=cfg.order,
                                                     seed=cfg.seed))
    end, _ = run_loop(trainer, checkpoints_of(big), batches, lambda: trainer.init(grown.params, opt),
                      eval_sets=eval_sets, bytes_per_token=bytes_per_token, stop_after=stop_after, eval_first=True)
    if int(end["step"]) < big.steps:
        return {}  # stopped by stop_after: no result yet
    _, evals = read_metrics(run_dir / "metrics.jsonl")
    per_step = tokens_per_step(big)
    d = cfg.growth_steps * per_step
    spent = six_n(small.model) * d + (six_n(big.model) * cfg.learn_steps * per_step if operator == "learn" else 0.0)
    curve = [{"step": s, "D": d + s * per_step, "flops": spent + six_n(big.model) * s * per_step,
              "loss": mean_eval(evals[s])} for s in sorted(evals)]
    doc = {"run": f"{operator}:{dim}", "operator": operator, "dim": dim, "g": growth_factor(small.model, big.model),
           "d": d, "N": param_counts(big.model)["non_embedding"], "n_small": param_counts(small.model)["non_embedding"],
           "order": cfg.order if (operator, dim) == ("direct", "depth") else "", "opt_state": cfg.opt_state,
           "curve": curve}
    write_atomic(run_dir / "result.json", json.dumps(doc))
    return doc


def mean_eval(row: dict[str, float]) -> float:
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
