"""Parameter and FLOP counts from a ModelConfig (no JAX), and `size_for`: the shape rule that ladders use.

Non-embedding parameters follow the OLMo ladder: everything except the input embedding table, so an untied output
head is counted (the 190M rung: 190,354,176). QK-norm scales span the full query and key widths, as in OLMo-2.
"""

from __future__ import annotations

import math

from ladderlab.errors import LadderlabError
from ladderlab.model.config import ModelConfig


def block_params(cfg: ModelConfig) -> int:
    """Parameters of one transformer block (attention, SwiGLU and their norms)."""
    D, q, kv = cfg.d_model, cfg.n_heads * cfg.head_dim, cfg.kv_heads * cfg.head_dim
    attention = D * q + 2 * D * kv + q * D + ((q + kv) if cfg.qk_norm else 0)
    return attention + 3 * D * cfg.d_ff + 2 * D


def param_counts(cfg: ModelConfig) -> dict[str, int]:
    """total, embedding (the input table) and non_embedding parameters."""
    embedding = cfg.vocab_size * cfg.d_model
    head = 0 if cfg.tie_embeddings else cfg.d_model * cfg.vocab_size
    non_embedding = cfg.n_layers * block_params(cfg) + cfg.d_model + head
    return {"total": embedding + non_embedding, "embedding": embedding, "non_embedding": non_embedding}


def flops_per_token(cfg: ModelConfig, seq_len: int) -> dict[str, float]:
    """Training FLOPs per token (forward + backward = 3 x forward, 2 FLOPs a multiply-add; remat's recompute and
    elementwise work not counted) under three conventions:

    `6N`: 6 x non-embedding parameters (Kaplan, Chinchilla's C = 6ND). `detailed`: 6 x every weight matrix a token
    touches (the output head too, tied or not; the input lookup is a gather) + the full seq_len x seq_len attention
    maps (PaLM appendix B, OLMo's counter). `causal`: the same with only the query-key pairs a causal mask keeps,
    (seq_len + 1) / 2 keys per query on average: the exact count of useful work, which MFU uses.
    """
    D, q, kv = cfg.d_model, cfg.n_heads * cfg.head_dim, cfg.kv_heads * cfg.head_dim
    matmul = cfg.n_layers * (2 * D * q + 2 * D * kv + 3 * D * cfg.d_ff) + D * cfg.vocab_size
    attention = cfg.n_layers * 2 * seq_len * q  # QK^T and AV: 2 multiply-adds per (query, key, channel)
    return {"6N": 6.0 * param_counts(cfg)["non_embedding"], "detailed": 6.0 * matmul + 6.0 * attention,
            "causal": 6.0 * matmul + 6.0 * attention * (seq_len + 1) / (2 * seq_len)}


def size_for(n_params: float, vocab_size: int, *, head_dim: int = 64, width_per_layer: int = 64,
             ffn_ratio: int = 4, **options) -> ModelConfig:
    """The config whose non-embedding count is nearest (in log) `n_params` along one fixed shape rule.

    Rule: width d is a multiple of head_dim, heads = d / head_dim, layers = d / width_per_layer (the OLMo ladder's
    190M and 370M rungs: 768/12, 1024/16), SwiGLU hidden = ffn_ratio x d. `options` go to ModelConfig.
    """
    if n_params <= 0:
        raise LadderlabError(f"size_for: n_params must be positive, got {n_params}")

    def shape(d: int) -> ModelConfig:
        return ModelConfig(vocab_size=vocab_size, d_model=d, n_heads=d // head_dim, d_ff=ffn_ratio * d,
                           n_layers=max(1, round(d / width_per_layer)), **options)

    best, d = shape(head_dim), head_dim
    while param_counts(shape(d))["non_embedding"] < 4 * n_params:
        candidate = shape(d)
        if abs(math.log(param_counts(candidate)["non_embedding"] / n_params)) < \
                abs(math.log(param_counts(best)["non_embedding"] / n_params)):
            best = candidate
        d += head_dim
    return best
