"""Depth growth of decoder parameters (pure dicts): L blocks -> g x L blocks; embedding, final norm and head reused.

Operators (Du et al. 2024): direct = G_stack, the whole small model repeated g times (order "stack": 0..L-1,
0..L-1, ...; "interpolate": 0,0,1,1,... for comparison); zero: each block followed by g-1 copies whose attention
output and SwiGLU down projections are zero (identity blocks, LEMON); random: each block followed by g-1 fresh
blocks whose branch outputs are masked (mask ramps 0 -> 1, MSG); learn (LiGO): each new block's weights are a
learned mix sum_j D[i, j] W_j of the old blocks', per weight type, starting as stacking.
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp

from ladderlab.errors import LadderlabError

BRANCH_OUTPUTS = (("attn", "wo"), ("mlp", "w_down"))  # zero these and a pre-norm block is the identity


def layer_order(n_src: int, factor: int, order: Literal["stack", "interpolate"] = "stack") -> list[int]:
    """Which small-model block each of the n_src x factor new blocks starts from."""
    if order == "stack":
        return [i % n_src for i in range(n_src * factor)]
    if order == "interpolate":
        return [i // factor for i in range(n_src * factor)]
    raise LadderlabError(f"layer order {order!r}: expected 'stack' or 'interpolate'")


def stack(params: dict, factor: int, order: Literal["stack", "interpolate"] = "stack") -> dict:
    """G_direct in depth (G_stack)."""
    blocks = params["blocks"]
    return {**params, "blocks": {i: blocks[j] for i, j in enumerate(layer_order(len(blocks), factor, order))}}


def _with_branches(block: dict, value) -> dict:
    """The block with its branch output projections replaced by value(w)."""
    return {**block, **{m: {**block[m], w: value(block[m][w])} for m, w in BRANCH_OUTPUTS}}


def zero(params: dict, factor: int) -> dict:
    """G_zero in depth: block j, then g-1 copies of it with zero branch outputs."""
    blocks = params["blocks"]
    new = {i: blocks[j] if i % factor == 0 else _with_branches(blocks[j], jnp.zeros_like)
           for i, j in enumerate(layer_order(len(blocks), factor, "interpolate"))}
    return {**params, "blocks": new}


def random(params: dict, fresh: dict, factor: int) -> tuple[dict, dict]:
    """G_random in depth: block j, then g-1 fresh blocks (from `fresh`, a target-shaped init) with masked branch
    outputs. Returns (params, masks); a mask of 0 multiplies a new block's branch outputs, so it starts as the
    identity."""
    blocks = params["blocks"]
    new, masks = {}, {}
    for i, j in enumerate(layer_order(len(blocks), factor, "interpolate")):
        old = i % factor == 0
        new[i] = blocks[j] if old else fresh["blocks"][i]
        ones = jax.tree.map(lambda w: jnp.ones((), w.dtype), new[i])
        masks[i] = ones if old else _with_branches(ones, jnp.zeros_like)
    other = jax.tree.map(lambda w: jnp.ones((), w.dtype), {k: v for k, v in params.items() if k != "blocks"})
    return {**params, "blocks": new}, {**other, "blocks": masks}


def learn_init(n_src: int, factor: int, block: dict) -> dict:
    """LiGO's depth maps, one (g L x L) matrix per weight type of a block, initialised as stacking."""
    start = jax.nn.one_hot(jnp.array(layer_order(n_src, factor)), n_src)
    return jax.tree.map(lambda _: start, block)


def learn_apply(params: dict, maps: dict) -> dict:
    """G_learn in depth: new block i's weight of each type = sum_j maps[type][i, j] x old block j's."""
    blocks = params["blocks"]
    stacked = jax.tree.map(lambda *ws: jnp.stack(ws), *(blocks[j] for j in range(len(blocks))))
    mixed = jax.tree.map(lambda m, w: jnp.tensordot(m, w, axes=1), maps, stacked)
    n_new = len(jax.tree.leaves(maps)[0])
    return {**params, "blocks": {i: jax.tree.map(lambda w: w[i], mixed) for i in range(n_new)}}
