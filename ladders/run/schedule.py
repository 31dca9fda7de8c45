"""Learning-rate schedules: linear warm-up, then cosine to a floor, WSD (stable, then linear decay) or constant."""

from __future__ import annotations

from typing import Callable

import jax.numpy as jnp

from ladderlab.errors import LadderlabError

SCHEDULES = ("cosine", "wsd", "constant")


def make_schedule(kind: str, peak: float, steps: int, warmup: int, *, floor_ratio: float = 0.1,
                  decay_fraction: float = 0.2) -> Callable[[int], jnp.ndarray]:
    """step -> learning rate. Warm-up rises linearly to `peak` at step `warmup`; the floor is floor_ratio x peak.

    cosine: from peak at `warmup` to the floor at `steps`. wsd: peak until the last `decay_fraction` of the steps,
    then linear to the floor at `steps`. constant: peak after warm-up.
    """
    if kind not in SCHEDULES:
        raise LadderlabError(f"schedule={kind!r}: expected one of {', '.join(SCHEDULES)}")
    if not 0 <= warmup <= steps or not 0 <= decay_fraction <= 1:
        raise LadderlabError(f"schedule: need 0 <= warmup_steps={warmup} <= steps={steps}, 0 <= decay_fraction <= 1")
    floor = floor_ratio * peak
    decay_start = steps - decay_fraction * (steps - warmup)

    def lr(step):
        step = jnp.asarray(step, jnp.float32)
        warm = peak * jnp.minimum(1.0, (step + 1) / max(warmup, 1))
        if kind == "constant":
            return warm
        if kind == "cosine":
            t = jnp.clip((step - warmup) / max(steps - warmup, 1), 0.0, 1.0)
            after = floor + (peak - floor) * 0.5 * (1 + jnp.cos(jnp.pi * t))
        else:
            t = jnp.clip((step - decay_start) / max(steps - decay_start, 1), 0.0, 1.0)
            after = peak + (floor - peak) * t
        return jnp.where(step < warmup, warm, after)

    return lr
