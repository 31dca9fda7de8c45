"""`TrainConfig`: everything one training run needs: model, data, mesh, optimizer, schedule, eval, checkpoints."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

from ladderlab.data.config import DataConfig
from ladderlab.model.config import ModelConfig


@dataclass(frozen=True)
class TrainConfig:
    """One run. Batch sizes count sequences of `data.seq_len` tokens; steps count optimizer updates."""

    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    run_dir: str = "runs/tiny"  # config, metrics.jsonl and TensorBoard events (written by process 0)
    checkpoint_dir: str = ""  # "" = run_dir/checkpoints; multi-host runs need one every host sees (gs://...)
    seed: int = 0  # parameter init
    distributed: bool = False  # call jax.distributed.initialize() first (every host of a multi-host slice)
    mesh: tuple[int, int, int] = (1, -1, 1)  # (data, fsdp, tensor) sizes; one -1 fills the devices
    batch_size: int = 8  # global sequences per optimizer step
    grad_accum: int = 1  # micro-batches per step (each batch_size / grad_accum sequences)
    steps: int = 100
    # AdamW with global-norm clipping; weight decay on weight matrices only (not norms, not the input embedding)
    lr: float = 3e-3
    b1: float = 0.9
    b2: float = 0.95
    eps: float = 1e-8
    weight_decay: float = 0.1
    clip_norm: float = 1.0  # 0 = no clipping
    z_loss: float = 0.0  # weight of mean(logsumexp^2)
    schedule: Literal["cosine", "wsd", "constant"] = "cosine"
    warmup_steps: int = 10
    min_lr_ratio: float = 0.1  # floor of cosine and WSD, as a fraction of lr
    decay_fraction: float = 0.2  # WSD: the final fraction of post-warm-up steps that decays
    # evaluation, logging, checkpoints (0 = never, except eval and a checkpoint at the last step)
    eval_every: int = 0
    eval_batch_size: int = 8
    log_every: int = 1
    checkpoint_every: int = 0
    keep_last: int = 3  # keep-last-K checkpoints
    keep_every: int = 0  # and every checkpoint whose step is a multiple of M
    progress: bool = True
