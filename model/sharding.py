"""One mesh (data, fsdp, tensor) and one table mapping the model's logical axis names onto it.

Parameters are sharded by their logical names (`out_sharding` metadata); batches split over data x fsdp. Every
size that does not divide its mesh axes is reported as one LadderlabError naming the parameter or the batch.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import numpy as np
from flax import nnx
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

from ladderlab.errors import LadderlabError

MESH_AXES = ("data", "fsdp", "tensor")

# logical axis name -> mesh axes; names absent here (and None) are replicated.
AXIS_RULES: dict[str, tuple[str, ...]] = {
    "batch": ("data", "fsdp"),
    "embed": ("fsdp",),
    "vocab": ("tensor",),
    "heads": ("tensor",),
    "kv": ("tensor",),
    "mlp": ("tensor",),
    "norm": (),
}


def make_mesh(sizes: tuple[int, ...], devices: list[Any] | None = None) -> Mesh:
    """A (data, fsdp, tensor) mesh over `devices` (default: all); at most one size may be -1 (fills the rest)."""
    devices = list(jax.devices() if devices is None else devices)
    if len(sizes) != 3 or sizes.count(-1) > 1 or any(s < 1 and s != -1 for s in sizes):
        raise LadderlabError(f"mesh={tuple(sizes)}: expected 3 sizes (data, fsdp, tensor), each >= 1 or one -1")
    known = math.prod(s for s in sizes if s != -1)
    shape = tuple(len(devices) // known if s == -1 else s for s in sizes)
    if math.prod(shape) != len(devices) or len(devices) % known:
        raise LadderlabError(f"mesh={tuple(sizes)} does not fit the {len(devices)} devices at hand")
    return jax.make_mesh(shape, MESH_AXES, axis_types=(AxisType.Auto,) * 3, devices=devices)


def logical_spec(axes: tuple[str | None, ...]) -> P:
    """PartitionSpec of mesh axes for a tuple of logical names."""
    return P(*[(AXIS_RULES.get(a, ()) if a else ()) or None for a in axes])


def param_shardings(abstract_state: Any, mesh: Mesh) -> Any:
    """NamedShardings (a pure dict like `nnx.to_pure_dict`) for an abstract nnx.State, after checking that every
    sharded dimension divides its mesh axes."""
    def one(path: tuple, var: Any) -> Any:
        spec = logical_spec(tuple(var.get_metadata().get("out_sharding") or (None,) * var.ndim))
        for dim, axes in zip(var.shape, spec):
            parts = _size(mesh, axes)
            if dim % parts:
                raise LadderlabError(f"parameter {jax.tree_util.keystr(path)} of shape {var.shape}: dimension {dim} "
                                     f"does not divide over mesh axes {axes} of size {parts}")
        return var.replace(value=NamedSharding(mesh, spec))

    is_variable = lambda x: hasattr(x, "get_metadata")  # noqa: E731
    return nnx.to_pure_dict(jax.tree_util.tree_map_with_path(one, abstract_state, is_leaf=is_variable))


def batch_sharding(mesh: Mesh, global_batch: int) -> NamedSharding:
    """Rows over data x fsdp, after checking the global batch divides them."""
    parts = _size(mesh, AXIS_RULES["batch"])
    if global_batch % parts or global_batch % jax.process_count():
        raise LadderlabError(f"batch_size={global_batch} is not divisible by the data x fsdp axes ({parts} shards) "
                             f"and {jax.process_count()} processes")
    return NamedSharding(mesh, logical_spec(("batch", None)))


def constrain(x: jax.Array, axes: tuple[str | None, ...]) -> jax.Array:
    """Pin an activation's sharding by logical names when traced under `jax.set_mesh`; a no-op without a mesh."""
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty:
        return x
    spec = logical_spec(axes)
    if any(dim % _size(mesh, a) for dim, a in zip(x.shape, spec)):
        return x  # e.g. an eval batch smaller than the mesh: let the compiler choose
    return jax.lax.with_sharding_constraint(x, spec)


def _size(mesh: Any, axes: Any) -> int:
    if axes is None:
        return 1
    return int(np.prod([mesh.shape[a] for a in ((axes,) if isinstance(axes, str) else axes)]))
