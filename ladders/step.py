"""The pure train and eval steps over (graphdef, state): masked cross-entropy, z-loss, accumulation, AdamW.

The train state is a plain dict {"params": pure dict, "opt": optax state, "step": int32}; `jit_train_step`
compiles it with explicit in/out shardings and donates the old state, so one copy of it lives on the devices.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from ladderlab.errors import LadderlabError
from ladderlab.ladders.config import TrainConfig
from ladderlab.ladders.schedule import make_schedule

BATCH_KEYS = ("inputs", "targets", "segment_ids", "positions", "mask")


def make_optimizer(cfg: TrainConfig) -> tuple[optax.GradientTransformation, Callable]:
    """AdamW (decay on weight matrices, not norms nor the input embedding) after global-norm clipping."""
    schedule = make_schedule(cfg.schedule, cfg.lr, cfg.steps, cfg.warmup_steps, floor_ratio=cfg.min_lr_ratio,
                             decay_fraction=cfg.decay_fraction)

    def decay_mask(params: Any) -> Any:
        return jax.tree_util.tree_map_with_path(
            lambda path, x: x.ndim >= 2 and not jax.tree_util.keystr(path).startswith("['embed']"), params)

    adamw = optax.adamw(schedule, cfg.b1, cfg.b2, cfg.eps, weight_decay=cfg.weight_decay, mask=decay_mask)
    clip = [optax.clip_by_global_norm(cfg.clip_norm)] if cfg.clip_norm > 0 else []
    return optax.chain(*clip, adamw), schedule


def token_sums(graphdef: nnx.GraphDef, params: dict, batch: dict[str, jax.Array],
               z_loss: float = 0.0) -> tuple[jax.Array, tuple[jax.Array, jax.Array, jax.Array]]:
    """(objective, (sum of CE, sum of logsumexp^2, real tokens)) over the masked targets of one batch."""
    model = nnx.merge(graphdef, params)
    logits_BxLxV = model(batch["inputs"], batch["positions"], batch["segment_ids"])
    logz_BxL = jax.nn.logsumexp(logits_BxLxV, axis=-1)
    target_BxL = jnp.take_along_axis(logits_BxLxV, batch["targets"][..., None], axis=-1)[..., 0]
    mask_BxL = batch["mask"].astype(jnp.float32)
    ce, z2 = jnp.sum((logz_BxL - target_BxL) * mask_BxL), jnp.sum(logz_BxL**2 * mask_BxL)
    return ce + z_loss * z2, (ce, z2, jnp.sum(mask_BxL))


def train_step(graphdef: nnx.GraphDef, optimizer: optax.GradientTransformation, schedule: Callable,
               cfg: TrainConfig, state: dict[str, Any], batch: dict[str, jax.Array]) -> tuple[dict, dict]:
    """One optimizer update on a global batch split into cfg.grad_accum micro-batches (rows i, i+A, i+2A, ...)."""
    A = cfg.grad_accum
    grad_fn = jax.grad(lambda p, mb: token_sums(graphdef, p, mb, cfg.z_loss), has_aux=True)

    def accumulate(carry, mb):
        grads, sums = carry
        g, aux = grad_fn(state["params"], mb)
        return (jax.tree.map(jnp.add, grads, g), jax.tree.map(jnp.add, sums, aux)), None

    if A == 1:
        grads, (ce, z2, tokens) = grad_fn(state["params"], batch)
    else:
        micro = {k: jnp.swapaxes(v.reshape(v.shape[0] // A, A, *v.shape[1:]), 0, 1) for k, v in batch.items()}
        zeros = (jax.tree.map(jnp.zeros_like, state["params"]), (jnp.zeros(()),) * 3)
        (grads, (ce, z2, tokens)), _ = jax.lax.scan(accumulate, zeros, micro)
    denom = jnp.maximum(tokens, 1.0)
    grads = jax.tree.map(lambda g: g / denom, grads)
    updates, opt = optimizer.update(grads, state["opt"], state["params"])
    params = optax.apply_updates(state["params"], updates)
    metrics = {"loss": ce / denom, "logz_sq": z2 / denom, "grad_norm": optax.tree.norm(grads),
               "lr": schedule(state["step"]), "tokens": tokens}
    return {"params": params, "opt": opt, "step": state["step"] + 1}, metrics


def jit_train_step(graphdef: nnx.GraphDef, optimizer: optax.GradientTransformation, schedule: Callable,
                   cfg: TrainConfig, state_shardings: Any, batch_shard: NamedSharding) -> Callable:
    """`train_step` jitted with explicit shardings; the state argument is donated."""
    if cfg.grad_accum < 1 or cfg.batch_size % cfg.grad_accum:
        raise LadderlabError(f"grad_accum={cfg.grad_accum} must divide batch_size={cfg.batch_size}")
    shards = batch_shard.mesh.shape["data"] * batch_shard.mesh.shape["fsdp"]
    if (cfg.batch_size // cfg.grad_accum) % shards:
        raise LadderlabError(f"micro-batch {cfg.batch_size // cfg.grad_accum} (batch_size / grad_accum) is not "
                             f"divisible by the data x fsdp axes ({shards} shards)")
    replicated = NamedSharding(batch_shard.mesh, P())
    step = lambda state, batch: train_step(graphdef, optimizer, schedule, cfg, state, batch)  # noqa: E731
    return jax.jit(step, in_shardings=(state_shardings, {k: batch_shard for k in BATCH_KEYS}),
                   out_shardings=(state_shardings, replicated), donate_argnums=0)


def jit_eval_step(graphdef: nnx.GraphDef, param_shardings: Any, mesh: Mesh) -> Callable:
    """params, batch -> (sum of CE, real tokens) of one eval batch."""
    def step(params, batch):
        _, (ce, _, tokens) = token_sums(graphdef, params, batch)
        return ce, tokens

    return jax.jit(step, in_shardings=(param_shardings, None), out_shardings=NamedSharding(mesh, P()))
