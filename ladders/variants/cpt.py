"""Continual pre-training in a ladder: a run that starts from another run's final parameters.

A CPT phase is a new run whose `init_from` names its base run's final checkpoint: the trainer starts it from those
parameters with a fresh optimizer at step 0 (so the schedule starts anew) and the new mixture's data from its start,
then checkpoints and resumes it in its own folder like any run; its config.gin names the base.
"""

from __future__ import annotations

import dataclasses
import os

from ladderlab.errors import LadderlabError
from ladderlab.ladders.run.config import TrainConfig
from ladderlab.paths import as_path, is_url


def continued(cfg: TrainConfig, base: TrainConfig) -> TrainConfig:
    """cfg starting from base's final checkpoint (a one-line error if the base run has not finished)."""
    final = as_path(base.checkpoint_dir or as_path(base.run_dir) / "checkpoints") / str(base.steps)
    if not (final / "state").is_dir():
        raise LadderlabError(f"{base.run_dir}: no final checkpoint (step {base.steps}) to continue from; "
                             f"train the base run first")
    return dataclasses.replace(cfg, init_from=str(final) if is_url(final) else os.path.abspath(final))
