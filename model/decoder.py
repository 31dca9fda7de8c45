"""The decoder in Flax NNX: RMSNorm, RoPE, grouped-query attention, SwiGLU, no biases (LLaMA / OLMo-2 family).

Parameters are fp32 and carry logical axis names (`out_sharding`, resolved by `model.sharding`); compute runs in
`compute_dtype` (bf16 on accelerators by default) with softmax, norms and logits in fp32. Attention runs by the
kernel `model.attention.choose` picks; with `scan_layers` the blocks are one Block whose parameters carry a leading
layer axis (logical name "layers"), run by `nnx.scan`. Shape letters:
B batch, L length, D model width, H query heads, K key/value heads, G = H/K, E head width, F hidden, V vocab.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from ladderlab.model import attention
from ladderlab.model.config import ModelConfig, check_model
from ladderlab.model.sharding import constrain


def compute_dtype(cfg: ModelConfig) -> jnp.dtype:
    """The activation dtype: bf16 on GPU/TPU and fp32 on CPU unless the config names one."""
    if cfg.compute_dtype == "auto":
        return jnp.float32 if cfg.backend == "cpu" else jnp.bfloat16
    return jnp.dtype(cfg.compute_dtype)


def _weight(rngs: nnx.Rngs, shape: tuple[int, ...], axes: tuple[str, ...], std: float) -> nnx.Param:
    """A weight drawn from a normal truncated at 3 std (OLMo init), tagged with its logical axes."""
    init = jax.nn.initializers.truncated_normal(std, lower=-3.0, upper=3.0)
    return nnx.Param(init(rngs.params(), shape, jnp.float32), out_sharding=axes, eager_sharding=False)


class RMSNorm(nnx.Module):
    def __init__(self, dim: int, axis: str, eps: float):
        self.scale = nnx.Param(jnp.ones((dim,), jnp.float32), out_sharding=(axis,), eager_sharding=False)
        self.eps = eps

    def __call__(self, x: jax.Array) -> jax.Array:
        x32 = x.astype(jnp.float32)
        y = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
        return (y * self.scale[...]).astype(x.dtype)


def rope_tables(positions_BxL: jax.Array, head_dim: int, theta: float) -> tuple[jax.Array, jax.Array]:
    """RoPE's (sin, cos), B x L x 1 x E/2 in fp32: made once per forward pass and shared by every layer."""
    half = head_dim // 2
    freq_E2 = theta ** (-jnp.arange(half, dtype=jnp.float32) / half)
    angle_BxLx1xE2 = (positions_BxL.astype(jnp.float32)[..., None] * freq_E2)[:, :, None, :]
    return jnp.sin(angle_BxLx1xE2), jnp.cos(angle_BxLx1xE2)


def rope(x_BxLxNxE: jax.Array, sin_cos: tuple[jax.Array, jax.Array]) -> jax.Array:
    """Rotary position embedding, rotate-half convention, in fp32."""
    sin, cos = sin_cos
    x1, x2 = jnp.split(x_BxLxNxE.astype(jnp.float32), 2, axis=-1)
    return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1).astype(x_BxLxNxE.dtype)


class Attention(nnx.Module):
    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        D, H, K, E = cfg.d_model, cfg.n_heads, cfg.kv_heads, cfg.head_dim
        self.wq = _weight(rngs, (D, H * E), ("embed", "heads"), cfg.init_std)
        self.wk = _weight(rngs, (D, K * E), ("embed", "kv"), cfg.init_std)
        self.wv = _weight(rngs, (D, K * E), ("embed", "kv"), cfg.init_std)
        self.wo = _weight(rngs, (H * E, D), ("heads", "embed"), cfg.init_std)
        self.q_norm = RMSNorm(H * E, "heads", cfg.norm_eps) if cfg.qk_norm else None
        self.k_norm = RMSNorm(K * E, "kv", cfg.norm_eps) if cfg.qk_norm else None
        self.shape = (H, K, E)
        self.kernel = attention.choose(cfg.attention, cfg.backend)

    def __call__(self, x_BxLxD: jax.Array, sin_cos: tuple[jax.Array, jax.Array],
                 segment_ids_BxL: jax.Array | None) -> jax.Array:
        (H, K, E), (B, L, _), dt = self.shape, x_BxLxD.shape, x_BxLxD.dtype
        q, k, v = (x_BxLxD @ w[...].astype(dt) for w in (self.wq, self.wk, self.wv))
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        q_BxLxHxE, k_BxLxKxE = rope(q.reshape(B, L, H, E), sin_cos), rope(k.reshape(B, L, K, E), sin_cos)
        out_BxLxHxE = attention.attend(self.kernel, q_BxLxHxE, k_BxLxKxE, v.reshape(B, L, K, E), segment_ids_BxL)
        return out_BxLxHxE.reshape(B, L, H * E) @ self.wo[...].astype(dt)


class SwiGLU(nnx.Module):
    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        D, F = cfg.d_model, cfg.d_ff
        self.w_gate = _weight(rngs, (D, F), ("embed", "mlp"), cfg.init_std)
        self.w_up = _weight(rngs, (D, F), ("embed", "mlp"), cfg.init_std)
        self.w_down = _weight(rngs, (F, D), ("mlp", "embed"), cfg.init_std)

    def __call__(self, x_BxLxD: jax.Array) -> jax.Array:
        dt = x_BxLxD.dtype
        h_BxLxF = jax.nn.silu(x_BxLxD @ self.w_gate[...].astype(dt)) * (x_BxLxD @ self.w_up[...].astype(dt))
        return h_BxLxF @ self.w_down[...].astype(dt)


class Block(nnx.Module):
    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        self.attn_norm = RMSNorm(cfg.d_model, "norm", cfg.norm_eps)
        self.attn = Attention(cfg, rngs)
        self.mlp_norm = RMSNorm(cfg.d_model, "norm", cfg.norm_eps)
        self.mlp = SwiGLU(cfg, rngs)
        self.norm_after = cfg.norm_after

    def __call__(self, x_BxLxD: jax.Array, sin_cos: tuple[jax.Array, jax.Array],
                 segment_ids_BxL: jax.Array | None) -> jax.Array:
        if self.norm_after:  # OLMo-2: normalise each branch's output
            x_BxLxD = x_BxLxD + self.attn_norm(self.attn(x_BxLxD, sin_cos, segment_ids_BxL))
            return x_BxLxD + self.mlp_norm(self.mlp(x_BxLxD))
        x_BxLxD = x_BxLxD + self.attn(self.attn_norm(x_BxLxD), sin_cos, segment_ids_BxL)
        return x_BxLxD + self.mlp(self.mlp_norm(x_BxLxD))


class Decoder(nnx.Module):
    """Token ids -> fp32 next-token logits. Packed rows: `positions` restart and attention stays in a segment.

    `hidden` (the final-normed states) and `head_matrix()` (the output matrix) are the pieces the chunked loss
    (`model.loss`) takes instead of the logits.
    """

    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        check_model(cfg)
        self.embed = _weight(rngs, (cfg.vocab_size, cfg.d_model), ("vocab", "embed"), cfg.init_std)
        if cfg.scan_layers:
            self.blocks = _stacked_blocks(cfg, rngs)
        else:
            self.blocks = nnx.List([Block(cfg, rngs) for _ in range(cfg.n_layers)])
        self.final_norm = RMSNorm(cfg.d_model, "norm", cfg.norm_eps)
        tied = cfg.tie_embeddings
        self.head = None if tied else _weight(rngs, (cfg.d_model, cfg.vocab_size), ("embed", "vocab"), cfg.init_std)
        self.dtype, self.scan, self.loss_chunk = compute_dtype(cfg), cfg.scan_layers, cfg.loss_chunk
        self.head_dim, self.rope_theta = cfg.head_dim, cfg.rope_theta
        self.remat = getattr(jax.checkpoint_policies, cfg.remat_policy) if cfg.remat else None

    def __call__(self, inputs_BxL: jax.Array, positions_BxL: jax.Array | None = None,
                 segment_ids_BxL: jax.Array | None = None) -> jax.Array:
        return self.logits(self.hidden(inputs_BxL, positions_BxL, segment_ids_BxL))

    def hidden(self, inputs_BxL: jax.Array, positions_BxL: jax.Array | None = None,
               segment_ids_BxL: jax.Array | None = None) -> jax.Array:
        """The final-normed hidden states (B x L x D, compute dtype): the input of the output projection."""
        table_VxD = constrain(self.embed[...], (None, None))  # gathered whole, as FSDP gathers every weight
        x_BxLxD = jnp.take(table_VxD, inputs_BxL, axis=0).astype(self.dtype)
        return self.trunk(x_BxLxD, positions_BxL, segment_ids_BxL)

    def from_embedded(self, x_BxLxD: jax.Array, positions_BxL: jax.Array | None = None,
                      segment_ids_BxL: jax.Array | None = None) -> jax.Array:
        """The logits from embedded inputs (separate so tests can differentiate through the inputs)."""
        return self.logits(self.trunk(x_BxLxD, positions_BxL, segment_ids_BxL))

    def trunk(self, x_BxLxD: jax.Array, positions_BxL: jax.Array | None = None,
              segment_ids_BxL: jax.Array | None = None) -> jax.Array:
        """The blocks and the final norm. No segment ids: one causal document per row."""
        B, L, _ = x_BxLxD.shape
        if positions_BxL is None:
            positions_BxL = jnp.broadcast_to(jnp.arange(L), (B, L))
        sin_cos = rope_tables(positions_BxL, self.head_dim, self.rope_theta)
        run = Block.__call__ if self.remat is None else nnx.remat(Block.__call__, policy=self.remat)

        def layer(block: Block, x_BxLxD: jax.Array) -> jax.Array:
            x_BxLxD = run(block, constrain(x_BxLxD, ("batch", None, None)), sin_cos, segment_ids_BxL)
            return constrain(x_BxLxD, ("batch", None, None))

        if self.scan:
            x_BxLxD = nnx.scan(layer, in_axes=(0, nnx.Carry), out_axes=nnx.Carry,
                               transform_metadata={nnx.PARTITION_NAME: "layers"})(self.blocks, x_BxLxD)
        else:
            for block in self.blocks:
                x_BxLxD = layer(block, x_BxLxD)
        return self.final_norm(x_BxLxD)

    def head_matrix(self) -> jax.Array:
        """The output matrix D x V in the compute dtype (the input embedding's transpose when tied)."""
        head_DxV = self.embed[...].T if self.head is None else self.head[...]
        return head_DxV.astype(self.dtype)

    def logits(self, x_BxLxD: jax.Array) -> jax.Array:
        """fp32 logits of final-normed hidden states."""
        logits_BxLxV = jnp.dot(x_BxLxD, self.head_matrix(), preferred_element_type=jnp.float32)
        return constrain(logits_BxLxV, ("batch", None, "vocab"))


def _stacked_blocks(cfg: ModelConfig, rngs: nnx.Rngs) -> Block:
    """One Block whose every parameter has a leading n_layers axis, each layer drawn from its own key."""
    @nnx.split_rngs(splits=cfg.n_layers)
    @nnx.vmap(in_axes=(0,), out_axes=0, transform_metadata={nnx.PARTITION_NAME: "layers"})
    def make(rngs: nnx.Rngs) -> Block:
        return Block(cfg, rngs)

    return make(rngs)


def stack_layers(params: dict) -> dict:
    """Pure parameters of an unrolled decoder ({"blocks": {0: ..., 1: ...}}) in the scan layout (leading layer axis)."""
    blocks = params["blocks"]
    return {**params, "blocks": jax.tree.map(lambda *ws: jnp.stack(ws), *(blocks[i] for i in range(len(blocks))))}


def unstack_layers(params: dict) -> dict:
    """The inverse of `stack_layers`: scan-layout parameters as {"blocks": {0: ..., 1: ...}}."""
    n = jax.tree.leaves(params["blocks"])[0].shape[0]
    return {**params, "blocks": {i: jax.tree.map(lambda w: w[i], params["blocks"]) for i in range(n)}}
