"""Where a run's numbers go: `metrics.jsonl` and TensorBoard events in the run folder, and a progress bar.

Only process 0 writes. Each JSONL line is {"step": S, "split": "train" | "eval", ...}; TensorBoard tags are
`<split>/<name>`. Train lines carry `tokens` (tokens trained on so far: step x batch x seq_len), `step_tokens` (per
step), `loss_tokens` (targets the step's loss counted) and `tok_s`. A run resumed from step S first drops (atomically)
the lines and event records of steps after S, so each step appears once; a fresh start drops them all.
A run folder on an object store (gs://...) is staged: the files are written on local disk and uploaded whole by
`sync` (the loop calls it before each checkpoint, and `close` at the end), so a checkpoint never has fewer lines.
The stage's place is fixed by the run folder's URL (`stage_root`), so a stage left by a killed process is removed
when that run starts again: kills leave at most one stale stage per run, never one per kill.
A run whose config names a `wandb_project` also logs every row to Weights & Biases (`tracking.WandbRun`).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import struct
import tempfile
import time
from pathlib import Path
from typing import Any

import jax
from google.protobuf.message import DecodeError
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from tensorboardX import FileWriter
from tensorboardX.proto.event_pb2 import Event
from tensorboardX.proto.summary_pb2 import Summary

from ladderlab.ladders.run.config import TrainConfig
from ladderlab.ladders.run.tracking import WandbRun
from ladderlab.paths import AnyPath, as_path, is_url, write_atomic


class RunLog:
    """JSONL + TensorBoard + progress bar (tokens/s, loss, ETA) for steps start..total of step_tokens tokens each;
    and W&B when `track`, the run's config, names a wandb_project."""

    def __init__(self, run_dir: str | Path, start: int, total: int, step_tokens: int, progress: bool = True,
                 track: TrainConfig | None = None):
        self.enabled, self.step_tokens = jax.process_index() == 0, step_tokens
        self.run_dir = as_path(run_dir)
        self.folder = _stage(self.run_dir) if self.enabled and is_url(run_dir) else Path(run_dir)
        if self.enabled:
            drop_after(self.folder, start)
        self.jsonl = open(self.folder / "metrics.jsonl", "a") if self.enabled else None
        self.tb = FileWriter(str(self.folder / "tensorboard")) if self.enabled else None
        self.wandb = WandbRun(track, start, self.folder) if self.enabled and track and track.wandb_project else None
        self.bar = Progress(TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("loss {task.fields[loss]:.4f}  {task.fields[tok_s]:,.0f} tok/s  ETA"),
                            TimeRemainingColumn(), disable=not (progress and self.enabled))
        self.task = self.bar.add_task("train", total=total, completed=start, loss=float("nan"), tok_s=0.0)
        self.bar.start()
        self.last_time, self.last_step = time.perf_counter(), start

    def train(self, step: int, metrics: dict[str, float]) -> dict[str, float]:
        """Record train metrics of `step` (adds tokens, step_tokens and tok_s since the last call); returns what was
        written."""
        now = time.perf_counter()
        tok_s = self.step_tokens * (step - self.last_step) / max(now - self.last_time, 1e-9)
        self.last_time, self.last_step = now, step
        row = {**metrics, "tokens": step * self.step_tokens, "step_tokens": self.step_tokens, "tok_s": tok_s}
        self.bar.update(self.task, completed=step, loss=row["loss"], tok_s=tok_s)
        self._write(step, "train", row)
        return row

    def eval(self, step: int, metrics: dict[str, float]) -> None:
        self._write(step, "eval", metrics)

    def _write(self, step: int, split: str, row: dict[str, float]) -> None:
        if self.enabled:
            self.jsonl.write(json.dumps({"step": step, "split": split, **row}) + "\n")
            self.jsonl.flush()
            self.tb.add_summary(Summary(value=[Summary.Value(tag=f"{split}/{k}", simple_value=float(v))
                                               for k, v in row.items()]), step)
            self.tb.flush()
            if self.wandb is not None:
                self.wandb.log(step, split, row)

    def sync(self) -> None:
        """Upload a staged run folder's files to the object store, each as one object (locally: nothing to do)."""
        if self.enabled and self.folder != self.run_dir:
            self.tb.flush()
            for path in sorted(p for p in self.folder.rglob("*") if p.is_file()):
                write_atomic(self.run_dir / path.relative_to(self.folder).as_posix(), path.read_bytes())
            for path in _events(self.run_dir):  # dropped on resuming
                if not (self.folder / "tensorboard" / path.name).exists():
                    path.unlink()

    def close(self) -> None:
        self.bar.stop()
        if self.enabled:
            self.jsonl.close()
            self.tb.close()
            if self.wandb is not None:
                self.wandb.finish()
            self.sync()
            if self.folder != self.run_dir:
                shutil.rmtree(self.folder.parent)


def stage_root(run_dir: AnyPath) -> Path:
    """Where the run folder `run_dir` (a URL) is staged: ladderlab-run-<hash of the URL> in the temp folder."""
    return Path(tempfile.gettempdir()) / f"ladderlab-run-{hashlib.sha256(str(run_dir).encode()).hexdigest()[:16]}"


def _stage(run_dir: AnyPath) -> Path:
    """A local folder (named like `run_dir`, in `stage_root`) holding copies of `run_dir`'s metrics.jsonl and
    TensorBoard events; what a killed process left there is removed first (the store holds what was synced, and
    one process writes a run folder at a time)."""
    root = stage_root(run_dir)
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(mode=0o700)
    folder = root / run_dir.name
    (folder / "tensorboard").mkdir(parents=True)
    for path in [run_dir / "metrics.jsonl", *_events(run_dir)]:
        if path.is_file():
            (folder / path.relative_to(run_dir).as_posix()).write_bytes(path.read_bytes())
    return folder


def _events(run_dir: AnyPath) -> list[AnyPath]:
    """The TensorBoard event files of a run folder."""
    return sorted((run_dir / "tensorboard").glob("events.out.tfevents.*"))


def read_rows(path: Path) -> list[dict[str, Any]]:
    """A metrics.jsonl's rows in order (a line cut short by a kill is skipped; no file: none)."""
    rows = []
    for line in path.read_text().splitlines() if path.is_file() else []:
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def last_rows(run_dir: Path) -> dict[str, dict[str, float]]:
    """{"train": ..., "eval": ...}: the last row of each split in run_dir's metrics.jsonl, as `RunLog` returned it."""
    return {row["split"]: {k: v for k, v in row.items() if k not in ("step", "split")}
            for row in read_rows(run_dir / "metrics.jsonl")}


def drop_after(run_dir: Path, start: int) -> None:
    """Rewrite metrics.jsonl and the TensorBoard event files without what was logged after step `start` (all of it
    when start is 0) and without a line or record cut short; files that lose nothing are left as they are."""
    path = run_dir / "metrics.jsonl"
    if path.is_file():
        text = "".join(json.dumps(row) + "\n" for row in read_rows(path) if start and row["step"] <= start)
        if text.encode() != path.read_bytes():
            write_atomic(path, text)
    for events in _events(run_dir):
        data, kept, at = events.read_bytes(), [], 0
        while at + 12 <= len(data):  # TFRecords: length, its CRC, the Event, its CRC
            end = at + 16 + struct.unpack_from("<Q", data, at)[0]
            if end > len(data):
                break
            try:
                step = Event.FromString(data[at + 12:end - 4]).step
            except DecodeError:
                break
            if start and step <= start:
                kept.append(data[at:end])
            at = end
        if not kept:
            events.unlink()
        elif sum(map(len, kept)) < len(data):
            write_atomic(events, b"".join(kept))
