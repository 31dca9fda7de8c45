"""Causal self-attention over packed rows, by one of four kernels, and `choose`: which one a config runs where.

`dense` is the reference (fp32 masked softmax over the full L x L map). `xla` and `cudnn` go through
`jax.nn.dot_product_attention`; `splash` is jax's Pallas splash-attention kernel for TPU. Packed rows (segment ids
given) always reach the kernel as a mask or as segment ids: no path drops them. Without segment ids, `xla` and
`cudnn` take the causal-only path (`is_causal`), which cuDNN runs as flash attention without a bias.
Shapes: q B x L x H x E, k and v B x L x K x E (K divides H, grouped-query), output B x L x H x E.
"""

from __future__ import annotations

import functools
import importlib.util
import math

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P

from ladderlab.errors import LadderlabError
from ladderlab.model.sharding import logical_spec

KERNELS = ("dense", "xla", "cudnn", "splash")


def splash_available() -> bool:
    """Whether this jax ships the TPU splash-attention kernel."""
    try:
        return importlib.util.find_spec("jax.experimental.pallas.ops.tpu.splash_attention") is not None
    except ImportError:
        return False


def choose(requested: str, backend: str) -> str:
    """The kernel a config's `attention` runs on `backend` ("cpu", "gpu", "tpu"): `auto` picks splash on TPU (when
    this jax has it), cuDNN on GPU and the dense reference on CPU (faster there than the XLA path); a named kernel
    is checked against the backend."""
    if requested == "auto":
        return {"tpu": "splash" if splash_available() else "xla", "gpu": "cudnn"}.get(backend, "dense")
    if requested not in KERNELS:
        raise LadderlabError(f"model.attention={requested!r}: expected auto or one of {', '.join(KERNELS)}")
    if (requested, backend) in (("cudnn", "cpu"), ("cudnn", "tpu"), ("splash", "cpu"), ("splash", "gpu")):
        raise LadderlabError(f"model.attention={requested!r} does not run on {backend}; use auto, xla or dense")
    return requested


def causal_mask(segment_ids_BxL: jax.Array | None, L: int) -> jax.Array:
    """B x 1 x L x L (1 x 1 x L x L without segments): True where query i may see key j (j <= i, same document)."""
    causal_LxL = jnp.tril(jnp.ones((L, L), bool))[None, None]
    if segment_ids_BxL is None:
        return causal_LxL
    return causal_LxL & (segment_ids_BxL[:, None, :, None] == segment_ids_BxL[:, None, None, :])


def attend(kernel: str, q_BxLxHxE: jax.Array, k_BxLxKxE: jax.Array, v_BxLxKxE: jax.Array,
           segment_ids_BxL: jax.Array | None) -> jax.Array:
    """softmax(q k^T / sqrt(E), causal and within each segment) v by `kernel` (one of KERNELS)."""
    if kernel == "dense":
        return dense(q_BxLxHxE, k_BxLxKxE, v_BxLxKxE, segment_ids_BxL)
    if kernel == "splash":
        return splash(q_BxLxHxE, k_BxLxKxE, v_BxLxKxE, segment_ids_BxL)
    L = q_BxLxHxE.shape[1]
    mask = None if segment_ids_BxL is None else causal_mask(segment_ids_BxL, L)
    return jax.nn.dot_product_attention(q_BxLxHxE, k_BxLxKxE, v_BxLxKxE, mask=mask, is_causal=mask is None,
                                        implementation=kernel)


def dense(q_BxLxHxE: jax.Array, k_BxLxKxE: jax.Array, v_BxLxKxE: jax.Array,
          segment_ids_BxL: jax.Array | None) -> jax.Array:
    """The reference: scores and softmax in fp32 over the whole masked L x L map of every head."""
    (B, L, H, E), K = q_BxLxHxE.shape, k_BxLxKxE.shape[2]
    q_BxLxKxGxE = q_BxLxHxE.reshape(B, L, K, H // K, E)
    att_BxKxGxLxL = jnp.einsum("bqkge,bske->bkgqs", q_BxLxKxGxE, k_BxLxKxE, preferred_element_type=jnp.float32)
    mask_Bx1x1xLxL = causal_mask(segment_ids_BxL, L)[:, :, None]
    att_BxKxGxLxL = jnp.where(mask_Bx1x1xLxL, att_BxKxGxLxL * E**-0.5, jnp.finfo(jnp.float32).min)
    probs_BxKxGxLxL = jax.nn.softmax(att_BxKxGxLxL, axis=-1).astype(q_BxLxHxE.dtype)
    return jnp.einsum("bkgqs,bske->bqkge", probs_BxKxGxLxL, v_BxLxKxE).reshape(B, L, H, E)


def splash(q_BxLxHxE: jax.Array, k_BxLxKxE: jax.Array, v_BxLxKxE: jax.Array,
           segment_ids_BxL: jax.Array | None, interpret: bool = False) -> jax.Array:
    """jax's Pallas splash attention (TPU; `interpret` runs it on any backend, slowly, for tests), one row at a
    time; key/value heads are repeated to the query heads. L must be a multiple of 128 (the kernel's blocks).
    Under a mesh the kernel runs per shard (`shard_map`: rows over data x fsdp, heads over tensor, where they
    divide), since XLA cannot partition a Pallas call itself."""
    from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_kernel as sk

    (B, L, H, E) = q_BxLxHxE.shape
    if L % 128:
        raise LadderlabError(f"model.attention='splash' needs seq_len divisible by 128, got {L}")
    segments_BxL = jnp.ones((B, L), jnp.int32) if segment_ids_BxL is None else segment_ids_BxL
    heads_first = lambda x: jnp.swapaxes(jnp.repeat(x, H // x.shape[2], axis=2), 1, 2)  # noqa: E731  B x H x L x E

    def rows(q_BxHxLxE: jax.Array, k_BxHxLxE: jax.Array, v_BxHxLxE: jax.Array, s_BxL: jax.Array) -> jax.Array:
        kernel = _splash_kernel(q_BxHxLxE.shape[1], L, interpret)
        return jax.vmap(lambda q, k, v, s: kernel(q, k, v, segment_ids=sk.SegmentIds(s, s)))(
            q_BxHxLxE, k_BxHxLxE, v_BxHxLxE, s_BxL)

    mesh = jax.sharding.get_abstract_mesh()
    if not mesh.empty:
        names = lambda axes: (axes,) if isinstance(axes, str) else axes or ()  # noqa: E731
        fits = lambda axes, n: axes if n % math.prod(mesh.shape[a] for a in names(axes)) == 0 else None  # noqa: E731
        batch, heads = (fits(axes, n) for axes, n in zip(logical_spec(("batch", "heads")), (B, H)))
        spec = P(batch, heads, None, None)
        rows = jax.shard_map(rows, mesh=mesh, in_specs=(spec, spec, spec, P(batch, None)), out_specs=spec,
                             check_vma=False)
    out_BxHxLxE = rows(heads_first(q_BxLxHxE * E**-0.5), heads_first(k_BxLxKxE), heads_first(v_BxLxKxE), segments_BxL)
    return jnp.swapaxes(out_BxHxLxE, 1, 2)


@functools.lru_cache(maxsize=16)
def _splash_kernel(H: int, L: int, interpret: bool):
    from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_kernel as sk
    from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_mask as sm

    block = min(512, L)
    sizes = sk.BlockSizes(block_q=block, block_kv=block, block_kv_compute=block, block_q_dkv=block,
                          block_kv_dkv=block, block_kv_dkv_compute=block, block_q_dq=block, block_kv_dq=block)
    mask = sm.MultiHeadMask([sm.CausalMask((L, L)) for _ in range(H)])
    return sk.make_splash_mha(mask, block_sizes=sizes, head_shards=1, q_seq_shards=1, interpret=interpret)
