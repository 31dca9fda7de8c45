"""`LadderConfig`: a ladder spec: sizes x token multiples x mixtures x seeds, and the rules that size each run.

Per-run hyperparameters follow the OLMo ladder's rules of N (non-embedding parameters, untied head included),
written per token so they carry to short sequences: batch = 160 x 2048 tokens x (N / 1.08e8)^(2/3), peak LR =
0.0047 (N / 1.08e8)^(-1/3), warm-up N tokens, cosine to 10%, 1xC = 20 tokens per parameter. For tiny CPU models
the batch rule is kept (it gives ~8 sequences of 128 tokens at N = 2e4) but the LR rule, which grows without
bound as N shrinks (0.08 at N = 2e4), is capped at `lr_max`. Every rule has a plain override.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from ladderlab.data.config import DataConfig


@dataclass(frozen=True)
class LadderConfig:
    """What to train. Sizes are non-embedding parameter targets (the shape rule picks each model) or named shapes.

    mixtures: name -> domain weights ({} = every corpus domain equally); the first is the ladder's main mixture.
    design: also propose this many mixtures over `design_domains` with the mixing-law design function.
    mixture_grid: "full" trains every mixture at every size x multiple; "smallest" trains the main mixture
        everywhere and the others only at the smallest size and multiple (a RegMix-style sweep).
    growth: "<operator>:<depth|width>" entries; each run also gets one grown variant per entry, whose small model
        (g = growth_factor) trains the first `growth_fraction` of the run's tokens and the grown model the rest.
    cpt: continual pre-training phases, name -> {"base": mixture, "mixture": {domain: weight}, "fraction": f}:
        every run of mixture `base` is continued from its final parameters (fresh optimizer and schedule) on the
        new mixture for f x its tokens; optional "lr" (the peak rate as a multiple of the base run's, default 1)
        and "schedule" (default the ladder's) vary the phase's schedule.
    branches: with schedule="wsd", the runs of one size, mixture and seed at the several `multiples` are decay
        branches of one stable run: the longest trains once, and each shorter one starts from its
        checkpoint at the step where its own decay begins (the steps before are the same) and trains only its
        cooldown, so a size costs about its longest run (`variants.wsd`).
    """

    name: str = "ladder"
    sizes: tuple[float, ...] = (8e3, 4e4)
    shapes: dict[str, tuple[int, int, int, int]] = dataclasses.field(default_factory=dict)  # label -> d, L, heads, d_ff
    multiples: tuple[float, ...] = (1.0, 2.0)  # token multiples xC
    tokens_per_param: float = 20.0  # 1xC
    mixtures: dict[str, dict[str, float]] = dataclasses.field(default_factory=lambda: {"equal": {}})
    design: int = 0
    design_method: Literal["dyadic", "uniform"] = "dyadic"
    design_domains: tuple[str, ...] = ()
    mixture_grid: Literal["full", "smallest"] = "full"
    seeds: tuple[int, ...] = (0,)
    growth: tuple[str, ...] = ()
    growth_factor: int = 4
    growth_fraction: float = 0.25
    cpt: dict[str, dict] = dataclasses.field(default_factory=dict)
    # the corpus, tokenizer, seq_len, eval tokens and cache of every run (each run sets its own mixture, seed and
    # train_tokens); shorter sequences and fewer eval tokens than a lone run's defaults suit small ladders
    data: DataConfig = dataclasses.field(default_factory=lambda: DataConfig(seq_len=128, eval_tokens=8192))
    # shape rule (model.counts.size_for)
    head_dim: int = 8
    width_per_layer: int = 16
    ffn_ratio: int = 4
    qk_norm: bool = True
    # other ModelConfig fields every run's model gets, e.g. {"remat": True, "scan_layers": True} for accelerators
    model_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    # hyperparameter rules of N and their overrides (0 / -1 = use the rule)
    n_ref: float = 1.08e8
    batch_tokens_ref: float = 160 * 2048
    lr_ref: float = 0.0047
    lr_max: float = 0.02
    batch_multiple: int = 8  # batch sizes are rounded to a multiple of this (the device count must divide it)
    warmup_tokens_per_param: float = 1.0
    batch_size: int = 0
    lr: float = 0.0
    warmup_steps: int = -1
    schedule: Literal["cosine", "wsd", "constant"] = "cosine"
    min_lr_ratio: float = 0.1
    decay_fraction: float = 0.2  # wsd: the final fraction of each run's post-warm-up steps that decays
    branches: bool = False
    weight_decay: float = 0.1
    # running
    swarm: bool = False  # train runs of one size and multiple (differing in mixture or seed) together, vmapped
    swarm_chunk: int = 0  # members a swarm vmaps at once, chunks in a loop (0 = all: accelerators; 1: CPUs)
    swarm_shards: int = 1  # device groups a swarm's members split over (the largest divisor of its size up to this)
    evals_per_run: int = 4  # evaluation + checkpoint points per run (the last step is always one)
    mesh: tuple[int, int, int] = (1, -1, 1)
    device_groups: int = 1  # split the devices into this many equal groups, each training one run at a time
    progress: bool = False  # per-step progress bars (the runner prints one line per run)
    # `ladder run --executor ray`: what each run's (or swarm's) task asks of each host ("CPU", "GPU", or a custom
    # resource such as "TPU"), hosts per run (> 1: one task per host joined by jax.distributed, e.g. a pod slice),
    # how often a task (or host group) whose worker died is retried, and environment variables for the tasks
    ray_resources: dict[str, float] = dataclasses.field(default_factory=lambda: {"CPU": 1})
    ray_hosts: int = 1
    ray_retries: int = 3
    ray_env: dict[str, str] = dataclasses.field(default_factory=dict)
    # Weights & Biases tracking of every run (TrainConfig's wandb_* fields; the group is "<name>/<results folder>")
    wandb_project: str = ""  # "" = off
    wandb_entity: str = ""
    wandb_mode: Literal["", "online", "offline", "disabled"] = ""
    # the `ladder plan` time estimate: seconds = overhead + steps x step_s + FLOPs / flops_per_s, the FLOPs of
    # training and of the task evaluations (`plan.run_seconds`); least squares over the 30 runs of the demo and
    # quick ladders trained from a fresh clone on this project's 2-core CPU, quiet (first runs' compiles included)
    flops_per_s: float = 1.6e10
    step_s: float = 0.012
    overhead_s: float = 3.5


# Fields that change how a ladder runs or is estimated, not its results: a results folder accepts a config
# that differs from its own only in these.
NOT_RESULTS = ("progress", "flops_per_s", "step_s", "overhead_s", "mesh", "device_groups", "swarm_chunk", "swarm_shards",
               "data.cache_dir", "name", "wandb_project", "wandb_entity", "wandb_mode", "ray_resources", "ray_hosts",
               "ray_retries", "ray_env")
