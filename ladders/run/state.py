"""The train state's abstract shape and shardings (from `eval_shape`, nothing allocated) and its sharded init.

Parameters live in the state as a pure dict (`nnx.to_pure_dict`), which optax and orbax take as it is.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from ladderlab.model.config import ModelConfig
from ladderlab.model.decoder import Decoder
from ladderlab.model.sharding import param_shardings


def abstract_model(cfg: ModelConfig) -> tuple[nnx.GraphDef, nnx.State]:
    """The decoder's graphdef and its parameters as ShapeDtypeStructs carrying logical-axis metadata."""
    return nnx.split(nnx.eval_shape(lambda: Decoder(cfg, nnx.Rngs(0))))


def state_shardings(abstract_params: nnx.State, optimizer: optax.GradientTransformation, mesh: Mesh) -> dict:
    """NamedShardings of {"params", "opt", "step"}: optimizer moments follow their parameters; counters replicate."""
    params = param_shardings(abstract_params, mesh)
    replicated = NamedSharding(mesh, P())
    plain = _plain(abstract_params)
    opt = optax.tree_map_params(optimizer, lambda _, s: s, jax.eval_shape(optimizer.init, plain), params,
                                transform_non_params=lambda _: replicated)
    return {"params": params, "opt": opt, "step": replicated}


def abstract_state(abstract_params: nnx.State, optimizer: optax.GradientTransformation, shardings: dict) -> dict:
    """ShapeDtypeStructs with shardings for the whole train state (restore targets, AOT compilation)."""
    plain = _plain(abstract_params)
    step = jax.ShapeDtypeStruct((), jnp.int32)
    shapes = {"params": plain, "opt": jax.eval_shape(optimizer.init, plain), "step": step}
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), shapes, shardings)


def init_state(cfg: ModelConfig, seed: int, optimizer: optax.GradientTransformation, shardings: dict) -> dict:
    """Initialise parameters and optimizer state directly into their shardings (never whole on one device).

    The seed is an input of one jitted init per (model, optimizer, shardings): runs differing in seed or
    schedule compile it once.
    """
    return _jitted_init(cfg, optimizer, FrozenTree(shardings))(jnp.int32(seed))


class FrozenTree:
    """A pytree (of shardings) as a hashable cache key: equal when structure and leaves are."""

    def __init__(self, tree: Any):
        self.tree = tree
        leaves, treedef = jax.tree.flatten(tree)
        self.key = (treedef, tuple(leaves))

    def __hash__(self) -> int:
        return hash(self.key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FrozenTree) and self.key == other.key


def seeded_state(cfg: ModelConfig, optimizer: optax.GradientTransformation) -> Callable[[jax.Array], dict]:
    """seed -> the train state at step 0 (traceable: jitted here, vmapped over a swarm's seeds)."""
    def init(seed):
        params = nnx.to_pure_dict(nnx.state(Decoder(cfg, nnx.Rngs(jax.random.key(seed)))))
        return {"params": params, "opt": optimizer.init(params), "step": jnp.zeros((), jnp.int32)}

    return init


@functools.lru_cache(maxsize=32)
def _jitted_init(cfg: ModelConfig, optimizer: optax.GradientTransformation, shardings: FrozenTree) -> Any:
    return jax.jit(seeded_state(cfg, optimizer), out_shardings=shardings.tree)


def _plain(abstract_params: nnx.State) -> dict:
    """The parameters as a pure dict of ShapeDtypeStructs (the train state holds pure dicts, not Variables)."""
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), nnx.to_pure_dict(abstract_params))
