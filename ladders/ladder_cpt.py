"""Continual pre-training in a ladder: a run that starts from another run's final parameters.

The trainer resumes from a run folder's newest checkpoint, so the continued run's step-0 checkpoint is written
here: the base run's final parameters, a fresh optimizer state, step 0 (so the schedule starts anew) and the new
mixture's data iterator at its start. The trainer then starts from it unchanged, and resumes like any run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

from ladderlab.errors import LadderlabError
from ladderlab.ladders.checkpoint import Checkpoints
from ladderlab.ladders.config import TrainConfig
from ladderlab.ladders.train import Trainer


def start_from_base(cfg: TrainConfig, base: TrainConfig, devices: list[Any] | None = None) -> None:
    """Write cfg's step-0 checkpoint from base's final one (nothing if cfg's run already has a checkpoint)."""
    from ladderlab.data import pipeline

    checkpoints = Checkpoints(Path(cfg.run_dir) / "checkpoints", cfg.keep_last, cfg.keep_every)
    try:
        if checkpoints.latest() is not None:
            return
        trainer = Trainer(cfg, devices)
        source = Checkpoints(Path(base.run_dir) / "checkpoints")
        try:
            restored = source.restore(trainer.abstract, pipeline.train_batches(base.data, base.batch_size))
        finally:
            source.close()
        if restored is None or restored[1] != base.steps:
            raise LadderlabError(f"{base.run_dir}: no final checkpoint (step {base.steps}) to continue from; "
                                 f"train the base run first")
        params = restored[0]["params"]
        state = {"params": params,
                 "opt": jax.jit(trainer.optimizer.init, out_shardings=trainer.shardings["opt"])(params),
                 "step": jax.device_put(jnp.zeros((), jnp.int32), trainer.shardings["step"])}
        checkpoints.save(0, state, pipeline.train_batches(cfg.data, cfg.batch_size))
    finally:
        checkpoints.close()
