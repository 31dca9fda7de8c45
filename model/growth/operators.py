"""Model growth (Du et al. 2024, "Stacking Your Transformers"): a trained small decoder's parameters in, a deeper or
wider decoder's parameters out, by one of four operators: direct (depth: G_stack), learn, zero, random.

Parameters are pure dicts (`nnx.to_pure_dict`, as the trainer keeps them). G_random also returns masks: train
the grown model on `masked(params, masks, c)` with c = `mask_ramp(step, steps)` going 0 -> 1, so the grown model
starts as the small one. Shapes per operator live in `depth` and `width`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Literal

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from ladderlab.errors import LadderlabError
from ladderlab.model.growth import depth, width
from ladderlab.model.config import ModelConfig, check_model
from ladderlab.model.counts import param_counts
from ladderlab.model.decoder import Decoder

OPERATORS = ("direct", "learn", "zero", "random")
Dim = Literal["depth", "width"]
_WIDTH_FIELDS = ("d_model", "n_heads", "n_kv_heads", "d_ff")


@dataclass(frozen=True)
class Grown:
    """A grown model's parameters, and for G_random the masks (1 = old, 0 = new output, ramped to 1)."""

    params: dict
    masks: dict | None = None
    learn_losses: tuple[float, ...] = ()  # G_learn: the grown model's loss at each step of fitting its maps


@dataclass(frozen=True)
class LearnSetup:
    """What G_learn trains its maps on: `loss_fn(params, batch)` of the grown model over `steps` batches (Adam)."""

    loss_fn: Callable[[dict, Any], jax.Array]
    batches: Iterator
    steps: int = 20
    lr: float = 1e-3


def growth_dim(src: ModelConfig, dst: ModelConfig) -> Dim:
    """'depth' or 'width': which way src grows into dst; one clear error when it cannot."""
    check_model(src)
    check_model(dst)
    if src.scan_layers or dst.scan_layers:
        raise LadderlabError("growth: operators take the unrolled layout; set model.scan_layers=False for both models "
                             "(model.decoder.unstack_layers / stack_layers convert trained parameters)")
    if dst.n_layers != src.n_layers:
        same = dataclasses.replace(dst, n_layers=src.n_layers) == src
        if not same:
            raise LadderlabError("growth: grow depth or width, not both: the source and target models differ in "
                                 "n_layers and in other fields")
        if dst.n_layers % src.n_layers:
            raise LadderlabError(f"growth: target n_layers={dst.n_layers} is not a multiple of the source's "
                                 f"{src.n_layers} (depth growth repeats whole blocks)")
        return "depth"
    keep = {f: getattr(src, f) for f in _WIDTH_FIELDS}
    if dataclasses.replace(dst, **keep) != src:
        diff = [f.name for f in dataclasses.fields(src) if getattr(src, f.name) != getattr(dst, f.name)]
        raise LadderlabError(f"growth: source and target may differ only in n_layers or in width fields "
                             f"({', '.join(_WIDTH_FIELDS)}); they differ in {', '.join(diff)}")
    for name, old, new in (("d_model", src.d_model, dst.d_model), ("n_heads", src.n_heads, dst.n_heads),
                           ("n_kv_heads", src.kv_heads, dst.kv_heads), ("d_ff", src.d_ff, dst.d_ff)):
        if new < old:
            raise LadderlabError(f"growth: target {name}={new} is smaller than the source's {old}: growth only adds units")
    if dst.head_dim != src.head_dim or dst.n_heads // dst.kv_heads != src.n_heads // src.kv_heads:
        raise LadderlabError(f"growth: width growth adds whole heads: head width ({src.head_dim} -> {dst.head_dim}) "
                             f"and query heads per key/value head must stay")
    if dst == src:
        raise LadderlabError("growth: the target model equals the source model")
    return "width"


def parse_operator(name: str, key: str) -> tuple[str, Dim]:
    """'direct:depth' -> ('direct', 'depth'): a growth run's operator and dimension; errors name config field `key`."""
    operator, _, dim = name.partition(":")
    if operator not in OPERATORS or dim not in ("depth", "width"):
        raise LadderlabError(f"{key}: {name!r}: expected OPERATOR:DIM with OPERATOR in {', '.join(OPERATORS)} and "
                             f"DIM depth or width")
    return operator, dim


def small_model(target: ModelConfig, factor: int, dim: Dim) -> ModelConfig:
    """The model that grows into `target` by growth factor g: n_layers / g layers (depth), or every width
    divided by sqrt(g) (width; g must be a square)."""
    if factor < 2:
        raise LadderlabError(f"growth factor g={factor}: must be an integer >= 2")
    if dim == "depth":
        if target.n_layers % factor:
            raise LadderlabError(f"growth factor g={factor} does not divide the target's n_layers={target.n_layers}")
        return dataclasses.replace(target, n_layers=target.n_layers // factor)
    root = math.isqrt(factor)
    if root * root != factor:
        raise LadderlabError(f"growth factor g={factor}: width growth divides every width by sqrt(g), so g must be a "
                             f"square (4, 9, ...)")
    sizes = {"d_model": target.d_model, "n_heads": target.n_heads, "n_kv_heads": target.kv_heads, "d_ff": target.d_ff}
    bad = [f"{k}={v}" for k, v in sizes.items() if v % root]
    if bad:
        raise LadderlabError(f"growth factor g={factor}: sqrt(g)={root} does not divide the target's {', '.join(bad)}")
    return dataclasses.replace(target, **{k: v // root for k, v in sizes.items()})


def growth_factor(src: ModelConfig, dst: ModelConfig) -> float:
    """g as the paper defines it: non-embedding parameters of the grown model / of the small one."""
    return param_counts(dst)["non_embedding"] / param_counts(src)["non_embedding"]


@functools.partial(jax.jit, static_argnums=(0, 1))
def init_params(cfg: ModelConfig, seed: int) -> dict:
    """A freshly initialised decoder's parameters (the source of G_random's and G_zero's new weights)."""
    return nnx.to_pure_dict(nnx.state(Decoder(cfg, nnx.Rngs(seed))))


def grow(params: dict, src: ModelConfig, dst: ModelConfig, operator: str, *,
         order: Literal["stack", "interpolate"] = "stack", seed: int = 0, learn: LearnSetup | None = None) -> Grown:
    """Grow `params` of model `src` into model `dst` with one operator (depth or width follows from the configs).

    order: G_stack's layer order in depth (whole-model repetition, or interpolation for comparison).
    learn: required for operator 'learn'.
    """
    if operator not in OPERATORS:
        raise LadderlabError(f"growth operator {operator!r}: expected one of {', '.join(OPERATORS)}")
    dim = growth_dim(src, dst)
    if operator == "learn":
        if learn is None or learn.steps < 0:
            raise LadderlabError("growth operator 'learn' needs a LearnSetup (loss, batches, steps >= 0)")
        return Grown(*_learn(params, src, dst, dim, learn, seed))
    fresh = init_params(dst, seed + 1) if operator in ("zero", "random") else None
    return Grown(*_structural(params, fresh, src, dst, operator, dim, order, seed))


def grow_moments(tree: dict, src: ModelConfig, dst: ModelConfig, operator: str, *,
                 order: Literal["stack", "interpolate"] = "stack", seed: int = 0) -> dict:
    """An optimizer moment (a parameter-shaped tree) grown the same way as the weights; new entries are zero."""
    if operator == "learn":
        raise LadderlabError("growth: G_learn mixes weights linearly, which has no meaning for Adam's second moment; "
                             "use opt_state='fresh' with operator 'learn'")
    dim = growth_dim(src, dst)
    zeros = jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), jax.eval_shape(lambda: init_params(dst, 0)))
    return _structural(tree, zeros, src, dst, operator, dim, order, seed)[0]


@functools.partial(jax.jit, static_argnums=(2, 3, 4, 5, 6, 7))
def _structural(params: dict, fresh: dict | None, src: ModelConfig, dst: ModelConfig, operator: str, dim: Dim,
                order: str, seed: int) -> tuple[dict, dict | None]:
    """direct / zero / random: (params, masks or None)."""
    factor = dst.n_layers // src.n_layers
    if dim == "depth":
        if operator == "direct":
            return depth.stack(params, factor, order), None
        if operator == "zero":
            return depth.zero(params, factor), None
        return depth.random(params, fresh, factor)
    if operator == "direct":
        return width.direct(params, src, dst, seed), None
    grown, masks = width.pad(params, fresh, src, dst, zero_fan_in=operator == "zero")
    return grown, masks if operator == "random" else None


def _learn(params: dict, src: ModelConfig, dst: ModelConfig, dim: Dim, setup: LearnSetup,
           seed: int) -> tuple[dict, None, tuple[float, ...]]:
    """G_learn: fit the linear growth maps for setup.steps Adam steps on the grown model's loss; apply them.
    Returns (params, no masks, the loss before each step)."""
    if dim == "depth":
        maps = depth.learn_init(src.n_layers, dst.n_layers // src.n_layers, params["blocks"][0])
        apply = lambda m: depth.learn_apply(params, m)  # noqa: E731
    else:
        maps = width.learn_init(src, dst, seed)
        apply = lambda m: width.learn_apply(params, m, src.head_dim)  # noqa: E731
    tx = optax.adam(setup.lr)

    @jax.jit
    def step(maps, opt, batch):
        loss, grads = jax.value_and_grad(lambda m: setup.loss_fn(apply(m), batch))(maps)
        updates, opt = tx.update(grads, opt, maps)
        return optax.apply_updates(maps, updates), opt, loss

    opt, losses = tx.init(maps), []
    for _ in range(setup.steps):
        maps, opt, loss = step(maps, opt, next(setup.batches))
        losses.append(loss)
    return jax.jit(apply)(maps), None, tuple(float(v) for v in losses)


def mask_ramp(step: jax.Array | int, steps: int) -> jax.Array:
    """G_random's mask value: linear from 0 at step 0 to 1 at `steps` (1 throughout when steps = 0)."""
    return jnp.clip(jnp.asarray(step, jnp.float32) / max(steps, 1), 0.0, 1.0) if steps > 0 else jnp.float32(1.0)


def masked(params: dict, masks: dict | None, c: jax.Array | float) -> dict:
    """The parameters the grown model computes with: new outputs scaled by c (W x (m + c (1 - m)))."""
    if masks is None:
        return params
    return jax.tree.map(lambda w, m: w * (m + c * (1.0 - m)).astype(w.dtype), params, masks)
