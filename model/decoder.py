"""The decoder in Flax NNX: RMSNorm, RoPE, grouped-query attention, SwiGLU, no biases (LLaMA / OLMo-2 family).

Parameters are fp32 and carry logical axis names (`out_sharding`, resolved by `model.sharding`); compute runs in
`compute_dtype` (bf16 on accelerators by default) with softmax, norms and logits in fp32. Shape letters:
B batch, L length, D model width, H query heads, K key/value heads, G = H/K, E head width, F hidden, V vocab.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from ladderlab.model.config import ModelConfig, check_model
from ladderlab.model.sharding import constrain


def compute_dtype(cfg: ModelConfig) -> jnp.dtype:
    """The activation dtype: bf16 on GPU/TPU and fp32 on CPU unless the config names one."""
    if cfg.compute_dtype == "auto":
        return jnp.float32 if jax.default_backend() == "cpu" else jnp.bfloat16
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


def rope(x_BxLxNxE: jax.Array, positions_BxL: jax.Array, theta: float) -> jax.Array:
    """Rotary position embedding, rotate-half convention, angles in fp32."""
    half = x_BxLxNxE.shape[-1] // 2
    freq_E2 = theta ** (-jnp.arange(half, dtype=jnp.float32) / half)
    angle_BxLx1xE2 = (positions_BxL.astype(jnp.float32)[..., None] * freq_E2)[:, :, None, :]
    sin, cos = jnp.sin(angle_BxLx1xE2), jnp.cos(angle_BxLx1xE2)
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
        self.shape, self.theta = (H, K, E), cfg.rope_theta

    def __call__(self, x_BxLxD: jax.Array, positions_BxL: jax.Array, mask_BxLxL: jax.Array) -> jax.Array:
        (H, K, E), (B, L, _), dt = self.shape, x_BxLxD.shape, x_BxLxD.dtype
        q, k, v = (x_BxLxD @ w[...].astype(dt) for w in (self.wq, self.wk, self.wv))
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        q_BxLxKxGxE = rope(q.reshape(B, L, H, E), positions_BxL, self.theta).reshape(B, L, K, H // K, E)
        k_BxLxKxE = rope(k.reshape(B, L, K, E), positions_BxL, self.theta)
        v_BxLxKxE = v.reshape(B, L, K, E)
        att_BxKxGxLxL = jnp.einsum("bqkge,bske->bkgqs", q_BxLxKxGxE, k_BxLxKxE, preferred_element_type=jnp.float32)
        att_BxKxGxLxL = jnp.where(mask_BxLxL[:, None, None], att_BxKxGxLxL * E**-0.5, jnp.finfo(jnp.float32).min)
        probs_BxKxGxLxL = jax.nn.softmax(att_BxKxGxLxL, axis=-1).astype(dt)
        out_BxLxKxGxE = jnp.einsum("bkgqs,bske->bqkge", probs_BxKxGxLxL, v_BxLxKxE)
        return out_BxLxKxGxE.reshape(B, L, H * E) @ self.wo[...].astype(dt)


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

    def __call__(self, x_BxLxD: jax.Array, positions_BxL: jax.Array, mask_BxLxL: jax.Array) -> jax.Array:
        if self.norm_after:  # OLMo-2: normalise each branch's output
            x_BxLxD = x_BxLxD + self.attn_norm(self.attn(x_BxLxD, positions_BxL, mask_BxLxL))
            return x_BxLxD + self.mlp_norm(self.mlp(x_BxLxD))
        x_BxLxD = x_BxLxD + self.attn(self.attn_norm(x_BxLxD), positions_BxL, mask_BxLxL)
        return x_BxLxD + self.mlp(self.mlp_norm(x_BxLxD))


def attention_mask(segment_ids_BxL: jax.Array) -> jax.Array:
    """True where query i may see key j: j <= i and both in the same packed document."""
    L = segment_ids_BxL.shape[1]
    causal_LxL = jnp.tril(jnp.ones((L, L), bool))
    return causal_LxL[None] & (segment_ids_BxL[:, :, None] == segment_ids_BxL[:, None, :])


class Decoder(nnx.Module):
    """Token ids -> fp32 next-token logits. Packed rows: `positions` restart and attention stays in a segment."""

    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        check_model(cfg)
        self.embed = _weight(rngs, (cfg.vocab_size, cfg.d_model), ("vocab", "embed"), cfg.init_std)
        self.blocks = nnx.List([Block(cfg, rngs) for _ in range(cfg.n_layers)])
        self.final_norm = RMSNorm(cfg.d_model, "norm", cfg.norm_eps)
        tied = cfg.tie_embeddings
        self.head = None if tied else _weight(rngs, (cfg.d_model, cfg.vocab_size), ("embed", "vocab"), cfg.init_std)
        self.dtype, self.remat = compute_dtype(cfg), cfg.remat

    def __call__(self, inputs_BxL: jax.Array, positions_BxL: jax.Array | None = None,
                 segment_ids_BxL: jax.Array | None = None) -> jax.Array:
        table_VxD = constrain(self.embed[...], (None, None))  # gathered whole, as FSDP gathers every weight
        x_BxLxD = jnp.take(table_VxD, inputs_BxL, axis=0).astype(self.dtype)
        return self.from_embedded(x_BxLxD, positions_BxL, segment_ids_BxL)

    def from_embedded(self, x_BxLxD: jax.Array, positions_BxL: jax.Array | None = None,
                      segment_ids_BxL: jax.Array | None = None) -> jax.Array:
        """The network after the embedding lookup (separate so tests can differentiate through the inputs)."""
        B, L, _ = x_BxLxD.shape
        if positions_BxL is None:
            positions_BxL = jnp.broadcast_to(jnp.arange(L), (B, L))
        if segment_ids_BxL is None:
            segment_ids_BxL = jnp.ones((B, L), jnp.int32)
        mask_BxLxL = attention_mask(segment_ids_BxL)
        run = nnx.remat(Block.__call__) if self.remat else Block.__call__  # remat: recompute in the backward pass
        for block in self.blocks:
            x_BxLxD = constrain(run(block, constrain(x_BxLxD, ("batch", None, None)), positions_BxL, mask_BxLxL),
                                ("batch", None, None))
        x_BxLxD = self.final_norm(x_BxLxD)
        head_DxV = self.embed[...].T if self.head is None else self.head[...]
        logits_BxLxV = jnp.dot(x_BxLxD, head_DxV.astype(self.dtype), preferred_element_type=jnp.float32)
        return constrain(logits_BxLxV, ("batch", None, "vocab"))
