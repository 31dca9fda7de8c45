"""Decay branches of a WSD ladder: one stable run per size, and a cooldown branch off it for each shorter run.

Within a size (and mixture and seed) the WSD runs at every multiple share their warm-up and peak rate, so a shorter
run's steps before its decay are the longest run's steps. The longest run trains in stages (`stop_after` each
branch point); at each, a branch's folder gets a copy of the longest run's checkpoint (hard links where the file
system allows) and its metrics up to that step, and the branch resumes from there on its own WSD schedule through
the one loop, as if it had trained those steps itself: its state, data position, curve and runs-table rows are
the standalone run's. Then the longest run trains on through its own decay. Every stage checkpoints, so a stopped
ladder resumes where it was; a finished branch is never trained again. A branch whose checkpoint was lost after
the longest run moved past its branch point trains alone from step 0 (said, and still equal to the standalone run).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ladderlab.errors import LadderlabError
from ladderlab.ladders.run.config import TrainConfig
from ladderlab.ladders.run.loop import say
from ladderlab.ladders.run.metrics import read_rows
from ladderlab.ladders.run.step import lr_table
from ladderlab.ladders.run.train import train
from ladderlab.paths import is_url, write_atomic


def train_branches(stable: TrainConfig, branches: Sequence[tuple[TrainConfig, int]], devices: list[Any] | None = None,
                   stable_done: bool = False) -> None:
    """Train the unfinished `branches` ((config, branch step), in order of branch step) off the longest run
    `stable`, then `stable` itself to its end (unless `stable_done`)."""
    for cfg, at in branches:
        if at and not _saved_steps(cfg):
            reached = max(_saved_steps(stable), default=0)
            if reached > at:
                say(f"run_dir {cfg.run_dir}: the stable run {stable.run_dir} is past this branch's step {at} "
                    f"(at {reached}) and no copy of it was kept; training the branch from step 0")
            else:
                if reached < at:
                    train(stable, devices=devices, stop_after=at)
                branch_from(stable, at, cfg)
        train(cfg, devices=devices)
    if not stable_done:
        train(stable, devices=devices)


def branch_from(stable: TrainConfig, at: int, cfg: TrainConfig) -> None:
    """Give cfg's run folder the first `at` steps of run `stable`: its metrics up to `at`, then its checkpoint at
    `at` (renamed into place last, so a copy cut short is redone). The two runs must feed those steps the same rates.
    Local folders only: an object store has no cheap rename or hard link."""
    if is_url(cfg.checkpoint_dir or cfg.run_dir) or is_url(stable.checkpoint_dir or stable.run_dir):
        raise LadderlabError(f"run_dir {cfg.run_dir}: decay branches need a local results folder (their checkpoints "
                             "are hard links to the stable run's)")
    if not np.array_equal(lr_table(stable)[:at], lr_table(cfg)[:at]):
        raise LadderlabError(f"run_dir {cfg.run_dir}: its first {at} learning rates differ from {stable.run_dir}'s; "
                             "it cannot branch off that run there")
    source = _checkpoint_dir(stable) / str(at)
    if not source.is_dir():
        raise LadderlabError(f"run_dir {stable.run_dir}: no checkpoint at step {at} to branch {cfg.run_dir} from")
    run_dir, target = Path(cfg.run_dir), _checkpoint_dir(cfg) / str(at)
    run_dir.mkdir(parents=True, exist_ok=True)
    rows = [row for row in read_rows(Path(stable.run_dir) / "metrics.jsonl") if row["step"] <= at]
    write_atomic(run_dir / "metrics.jsonl", "".join(json.dumps(row) + "\n" for row in rows))
    partial = target.with_name(f".{at}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    shutil.copytree(source, partial, copy_function=_link_or_copy)
    partial.rename(target)


def _checkpoint_dir(cfg: TrainConfig) -> Path:
    return Path(cfg.checkpoint_dir or Path(cfg.run_dir) / "checkpoints")


def _saved_steps(cfg: TrainConfig) -> list[int]:
    """The steps of cfg's checkpoint folders (committed or not: the loop's restore sorts them out)."""
    folder = _checkpoint_dir(cfg)
    return [int(p.name) for p in folder.iterdir() if p.name.isdigit()] if folder.is_dir() else []


def _link_or_copy(src: str, dst: str) -> None:
    """A hard link (checkpoint files are never rewritten in place), or a copy where links are not possible."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)

