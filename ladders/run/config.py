"""`TrainConfig`: everything one training run needs: model, data, mesh, optimizer, schedule, eval, checkpoints;
and which of its fields a resumed run may change (`resume_changes`)."""

from __future__ import annotations

import ast
import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from ladderlab.config import dump_gin
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
    # a fresh run starts from the parameters of this checkpoint folder (<checkpoints>/<step>) with a fresh
    # optimizer at step 0 (continual pre-training); "" = from `seed`'s initialisation
    init_from: str = ""
    allow_schedule_change: bool = False  # a resumed run may change SCHEDULE's fields (it says which)
    # Weights & Biases tracking beside metrics.jsonl and TensorBoard (the wandb extra; `tracking`): the project
    # ("" = off), entity ("" = the account's default), group (a ladder's runs: "<ladder name>/<results folder>"),
    # mode ("online", "offline", "disabled"; "" = WANDB_MODE, else online) and the run's name ("" = run_dir's name)
    wandb_project: str = ""
    wandb_entity: str = ""
    wandb_group: str = ""
    wandb_mode: Literal["", "online", "offline", "disabled"] = ""
    wandb_name: str = ""


# The fields a resumed run may change without changing what it trains (dotted names), and why; any other field must
# equal the run's saved config.gin, except SCHEDULE's, which `allow_schedule_change` accepts.
RESUME_FREE: dict[str, str] = {
    **dict.fromkeys(("run_dir", "checkpoint_dir", "data.cache_dir"), "where files live"),
    **dict.fromkeys(("progress", "log_every", "eval_every", "eval_batch_size"),
                    "what is logged or evaluated, and when (eval batches are padded and masked: any size gives the "
                    "same numbers)"),
    **dict.fromkeys(("checkpoint_every", "keep_last", "keep_every"), "when checkpoints are saved and kept"),
    **dict.fromkeys(("distributed", "mesh", "grad_accum", "model.compute_dtype", "model.remat",
                     "model.remat_policy", "model.attention", "model.loss_chunk", "model.platform"),
                    "how the same update is computed (processes, layout, memory, precision: float rounding only; "
                    "compute_dtype 'auto' already changes with the hardware)"),
    **dict.fromkeys(("data.train_tokens", "data.max_epochs", "data.on_overrepeat"),
                    "the data-repetition check only, not the batches"),
    "allow_schedule_change": "the switch itself",
    **dict.fromkeys(("wandb_project", "wandb_entity", "wandb_group", "wandb_mode", "wandb_name"),
                    "where metrics are tracked"),
}
SCHEDULE = ("steps", "lr", "schedule", "warmup_steps", "min_lr_ratio", "decay_fraction")


def resume_changes(saved_gin: str, cfg: TrainConfig) -> dict[str, tuple[str, str]]:
    """{dotted field: (saved value, new value)} for every field outside RESUME_FREE whose value in cfg differs from
    a run's saved config.gin text; a field the saved file lacks (added to TrainConfig since) counts as its default."""
    old = {**_gin_fields(dump_gin(TrainConfig())), **_gin_fields(saved_gin)}
    new = _gin_fields(dump_gin(cfg))
    return {k: (old[k][0] if k in old else "(none)", text) for k, (text, value) in new.items()
            if k not in RESUME_FREE and (k not in old or old[k][1] != value)}


def _gin_fields(text: str) -> dict[str, tuple[str, Any]]:
    """`dump_gin` bindings as {dotted field: (value text, value)}: 'model/ModelConfig.d_ff = 64' -> model.d_ff;
    values are compared as literals, so dict order does not count."""
    out = {}
    for line in text.splitlines():
        selector, sep, value = line.partition(" = ")
        if sep and not value.startswith("@"):
            scope, _, binding = selector.rpartition("/")
            try:
                parsed = ast.literal_eval(value)
            except (ValueError, SyntaxError):
                parsed = value
            out[".".join([*filter(None, scope.split("/")), binding.rpartition(".")[2]])] = (value, parsed)
    return out
