"""The pure train and eval steps over (graphdef, state): masked cross-entropy (chunked, `model.loss`), z-loss,
accumulation, AdamW.

The train state is a plain dict {"params": pure dict, "opt": optax state, "step": int32}; `jit_train_step`
compiles it with explicit in/out shardings and donates the old state, so one copy of it lives on the devices.
The learning rate is an input of the step (the host reads it from `lr_table`), not a constant in it, so runs of
one model shape that differ only in lr, warm-up, steps or schedule share one jitted step and its compilation.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from ladderlab.errors import LadderlabError
from ladderlab.ladders.run.schedule import make_schedule
from ladderlab.ladders.run.state import FrozenTree
from ladderlab.model.loss import logit_sums

if TYPE_CHECKING:  # only its fields are read, so the step imports without gin (benchmarks/device_check.py)
    from ladderlab.ladders.run.config import TrainConfig

BATCH_KEYS = ("inputs", "targets", "segment_ids", "positions", "mask")


def run_schedule(cfg: TrainConfig) -> Callable[[int], jnp.ndarray]:
    """cfg's learning-rate schedule: step -> rate."""
    return make_schedule(cfg.schedule, cfg.lr, cfg.steps, cfg.warmup_steps, floor_ratio=cfg.min_lr_ratio,
                         decay_fraction=cfg.decay_fraction)


def lr_table(cfg: TrainConfig) -> np.ndarray:
    """The rate of every step 0..steps-1 (float32), evaluated eagerly on the host: what the step is fed.
    Evaluated on a power-of-two length (elementwise, so the same values): eager ops compile once per length."""
    return np.asarray(run_schedule(cfg)(jnp.arange(1 << (cfg.steps - 1).bit_length())), np.float32)[:cfg.steps]


def make_optimizer(cfg: TrainConfig) -> optax.GradientTransformation:
    """AdamW with decay on weight matrices (not norms nor the input embedding) after global-norm clipping, its
    learning rate a hyperparameter held in its state (`optax.inject_hyperparams`) that `with_lr` sets each step.
    One object per distinct constants, so it can key the cache of jitted steps."""
    return _adamw(cfg.b1, cfg.b2, cfg.eps, cfg.weight_decay, cfg.clip_norm)


def with_lr(opt_state: Any, lr: jax.Array) -> Any:
    """`make_optimizer`'s state with its learning rate set to `lr`."""
    return opt_state._replace(hyperparams={**opt_state.hyperparams, "learning_rate": lr})


@functools.cache
def _adamw(b1: float, b2: float, eps: float, weight_decay: float, clip_norm: float) -> optax.GradientTransformation:
    def decay_mask(params: Any) -> Any:
        return jax.tree_util.tree_map_with_path(
            lambda path, x: x.ndim >= 2 and not jax.tree_util.keystr(path).startswith("['embed']"), params)

    def chain(learning_rate: float) -> optax.GradientTransformation:
        adamw = optax.adamw(learning_rate, b1, b2, eps, weight_decay=weight_decay, mask=decay_mask)
        return optax.chain(*([optax.clip_by_global_norm(clip_norm)] if clip_norm > 0 else []), adamw)

    return optax.inject_hyperparams(chain)(learning_rate=0.0)  # every step sets its own rate


def token_sums(graphdef: nnx.GraphDef, params: dict, batch: dict[str, jax.Array],
               z_loss: float = 0.0) -> tuple[jax.Array, tuple[jax.Array, jax.Array, jax.Array]]:
    """(objective, (sum of CE, sum of logsumexp^2, real tokens)) over the masked targets of one batch."""
    ce, z2 = _sums(graphdef, params, batch, hits=False)
    return ce + z_loss * z2, (ce, z2, jnp.sum(batch["mask"].astype(jnp.float32)))


def eval_sums(graphdef: nnx.GraphDef, params: dict, batch: dict[str, jax.Array]) -> tuple[jax.Array, ...]:
    """Per row of one eval batch: (sum of CE, top-1 correct predictions, real tokens) over its masked targets, each
    a [B] array. A domain's evaluation adds up the rows, a task's compares the rows of an item's choices."""
    ce, _, hits = _sums(graphdef, params, batch, hits=True, rows=True)
    return ce, hits, jnp.sum(batch["mask"].astype(jnp.float32), axis=-1)


def _sums(graphdef: nnx.GraphDef, params: dict, batch: dict[str, jax.Array], hits: bool,
          rows: bool = False) -> tuple[jax.Array, ...]:
    """The model's chunked output projection + cross-entropy sums (`model.loss.logit_sums`) on one batch."""
    model = nnx.merge(graphdef, params)
    x_BxLxD = model.hidden(batch["inputs"], batch["positions"], batch["segment_ids"])
    return logit_sums(x_BxLxD, model.head_matrix(), batch["targets"], batch["mask"], model.loss_chunk, hits, rows)


def train_step(graphdef: nnx.GraphDef, optimizer: optax.GradientTransformation, state: dict[str, Any],
               batch: dict[str, jax.Array], lr: jax.Array, *, grad_accum: int = 1, z_loss: float = 0.0,
               transform: Callable[[dict, jax.Array], dict] | None = None) -> tuple[dict, dict]:
    """One update at rate `lr` (set in the optimizer's state, `with_lr`) on a global batch split into grad_accum
    micro-batches (rows i, i+A, i+2A, ...). The loss is of transform(params, step) (default: the parameters), its
    gradient taken through the transform."""
    A = grad_accum
    use = (lambda p: p) if transform is None else (lambda p: transform(p, state["step"]))
    grad_fn = jax.grad(lambda p, mb: token_sums(graphdef, use(p), mb, z_loss), has_aux=True)

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
    updates, opt = optimizer.update(grads, with_lr(state["opt"], lr), state["params"])
    params = optax.apply_updates(state["params"], updates)
    metrics = {"loss": ce / denom, "logz_sq": z2 / denom, "grad_norm": optax.tree.norm(grads), "lr": lr,
               "loss_tokens": tokens}
    return {"params": params, "opt": opt, "step": state["step"] + 1}, metrics


def jit_train_step(graphdef: nnx.GraphDef, optimizer: optax.GradientTransformation, cfg: TrainConfig,
                   state_shardings: Any, batch_shard: NamedSharding,
                   transform: Callable[[dict, jax.Array], dict] | None = None) -> Callable:
    """`train_step` jitted with explicit shardings: (state, batch, lr) -> (state, metrics), the state donated.

    Cached by (graphdef, optimizer, grad_accum, z_loss, shardings, transform): runs differing in nothing else get the
    same jitted function, so jax compiles their step once.
    """
    if cfg.grad_accum < 1 or cfg.batch_size % cfg.grad_accum:
        raise LadderlabError(f"grad_accum={cfg.grad_accum} must divide batch_size={cfg.batch_size}")
    shards = batch_shard.mesh.shape["data"] * batch_shard.mesh.shape["fsdp"]
    if (cfg.batch_size // cfg.grad_accum) % shards:
        raise LadderlabError(f"micro-batch {cfg.batch_size // cfg.grad_accum} (batch_size / grad_accum) is not "
                             f"divisible by the data x fsdp axes ({shards} shards)")
    return _jitted_train_step(graphdef, optimizer, cfg.grad_accum, cfg.z_loss, FrozenTree(state_shardings), batch_shard,
                              transform)


def jit_eval_step(graphdef: nnx.GraphDef, param_shardings: Any, mesh: Mesh) -> Callable:
    """params, batch -> `eval_sums` (per row) of one eval batch; cached like `jit_train_step`."""
    return _jitted_eval_step(graphdef, FrozenTree(param_shardings), mesh)


@functools.lru_cache(maxsize=32)
def _jitted_train_step(graphdef: nnx.GraphDef, optimizer: optax.GradientTransformation, grad_accum: int, z_loss: float,
                       state_shardings: FrozenTree, batch_shard: NamedSharding, transform: Callable | None) -> Callable:
    replicated = NamedSharding(batch_shard.mesh, P())
    step = functools.partial(train_step, graphdef, optimizer, grad_accum=grad_accum, z_loss=z_loss, transform=transform)
    return jax.jit(step, in_shardings=(state_shardings.tree, {k: batch_shard for k in BATCH_KEYS}, replicated),
                   out_shardings=(state_shardings.tree, replicated), donate_argnums=0)


@functools.lru_cache(maxsize=32)
def _jitted_eval_step(graphdef: nnx.GraphDef, param_shardings: FrozenTree, mesh: Mesh) -> Callable:
    return jax.jit(functools.partial(eval_sums, graphdef), in_shardings=(param_shardings.tree, None),
                   out_shardings=NamedSharding(mesh, P()))
