"""`GrowConfig`: an operator comparison: a target model trained from scratch, and grown from a small model by each
growth operator (train the small model for d tokens, grow, keep training), at equal batch, LR and schedule."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

from ladderlab.ladders.config import TrainConfig

ALL_RUNS = ("scratch", "direct:depth", "learn:depth", "zero:depth", "random:depth",
            "direct:width", "learn:width", "zero:width", "random:width")


@dataclass(frozen=True)
class GrowConfig:
    """`train` is the target model's run after growth (its `steps` count the grown model's steps); the small model
    trains with the same batch, LR and schedule for `growth_steps` (d = growth_steps x batch x seq_len tokens).
    The scratch run trains the target for as many steps as give it the grown runs' total FLOPs (6N per token)."""

    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    runs: tuple[str, ...] = ALL_RUNS  # "scratch" and "<operator>:<depth|width>"
    growth_factor: int = 4  # g: n_layers / g layers (depth) or every width / sqrt(g) (width)
    growth_steps: int = 50
    order: Literal["stack", "interpolate"] = "stack"  # G_stack's layer order
    opt_state: Literal["fresh", "grow"] = "fresh"  # the grown model's optimizer state
    learn_steps: int = 20  # G_learn: Adam steps fitting the growth maps (their FLOPs are counted)
    learn_lr: float = 1e-3
    mask_steps: int = 20  # G_random: steps over which the masks ramp 0 -> 1
    seed: int = 0  # new weights of the operators (direct-width copy choice, random/zero new entries, learn maps)
