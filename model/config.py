"""The decoder's shape and options: one dataclass shared by the model, the counters and the trainer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class ModelConfig:
    """A LLaMA / OLMo-2 family decoder. Defaults: a tiny byte-level model that trains on a CPU in seconds."""

    vocab_size: int = 256
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    n_kv_heads: int | None = None  # grouped-query attention; None = n_heads (plain multi-head)
    d_ff: int = 256  # SwiGLU hidden width
    norm_after: bool = False  # OLMo-2 reordered norm: x + norm(f(x)) instead of x + f(norm(x))
    qk_norm: bool = False  # RMSNorm over the full query and key projections (OLMo-2)
    tie_embeddings: bool = False
    rope_theta: float = 10_000.0
    norm_eps: float = 1e-6
    init_std: float = 0.02
    compute_dtype: Literal["auto", "float32", "bfloat16"] = "auto"  # auto: bf16 on accelerators, fp32 on CPU
    remat: bool = False  # recompute each block in the backward pass (activation memory of one block, not all)
    remat_policy: str = "nothing_saveable"  # with remat: what a block keeps (a jax.checkpoint_policies name)
    scan_layers: bool = False  # one block's parameters stacked over layers and run by nnx.scan (compiles once)
    attention: str = "auto"  # kernel (model.attention): auto, dense, xla, cudnn (GPU) or splash (TPU)
    loss_chunk: int = 8192  # tokens per chunk of the output projection + cross-entropy (model.loss); 0 = all
    platform: str = "auto"  # the backend it compiles for (auto: jax.default_backend(); tpu: a TPU AOT compile here)

    @property
    def backend(self) -> str:
        """The backend whose kernel and `auto` dtype the model uses."""
        if self.platform == "auto":
            import jax

            return jax.default_backend()
        return self.platform

    @property
    def kv_heads(self) -> int:
        return self.n_kv_heads or self.n_heads

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads


def check_model(cfg: ModelConfig) -> None:
    """Raise a one-line LadderlabError for shapes the decoder cannot build."""
    from ladderlab.errors import LadderlabError

    if min(cfg.vocab_size, cfg.d_model, cfg.n_layers, cfg.n_heads, cfg.kv_heads, cfg.d_ff) < 1:
        raise LadderlabError(f"model: sizes must be positive: {cfg}")
    if cfg.d_model % cfg.n_heads or cfg.head_dim % 2:
        raise LadderlabError(f"model.d_model={cfg.d_model} must split into n_heads={cfg.n_heads} heads of even size")
    if cfg.n_heads % cfg.kv_heads:
        raise LadderlabError(f"model.n_kv_heads={cfg.kv_heads} must divide n_heads={cfg.n_heads}")
    if cfg.remat_policy not in REMAT_POLICIES:
        raise LadderlabError(f"model.remat_policy={cfg.remat_policy!r}: expected one of {', '.join(REMAT_POLICIES)}")
    if cfg.platform not in ("auto", "cpu", "gpu", "tpu"):
        raise LadderlabError(f"model.platform={cfg.platform!r}: expected auto, cpu, gpu or tpu")
    if cfg.loss_chunk < 0:
        raise LadderlabError(f"model.loss_chunk={cfg.loss_chunk} must be >= 0 (0 = one chunk)")


# jax.checkpoint_policies that take no arguments (the rest need names or offload targets)
REMAT_POLICIES = ("nothing_saveable", "everything_saveable", "dots_saveable", "checkpoint_dots",
                  "dots_with_no_batch_dims_saveable", "checkpoint_dots_with_no_batch_dims")
