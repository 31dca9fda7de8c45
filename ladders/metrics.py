"""Where a run's numbers go: `metrics.jsonl` and TensorBoard events in the run folder, and a progress bar.

Only process 0 writes. Each JSONL line is {"step": S, "split": "train" | "eval", ...}; TensorBoard tags are
`<split>/<name>`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import jax
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ladderlab.ladders.tensorboard import SummaryWriter


class RunLog:
    """JSONL + TensorBoard + progress bar (tokens/s, loss, ETA) for steps start..total."""

    def __init__(self, run_dir: str | Path, start: int, total: int, progress: bool = True):
        self.enabled = jax.process_index() == 0
        self.jsonl = open(Path(run_dir) / "metrics.jsonl", "a") if self.enabled else None
        self.tb = SummaryWriter(Path(run_dir) / "tensorboard") if self.enabled else None
        self.bar = Progress(TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("loss {task.fields[loss]:.4f}  {task.fields[tok_s]:,.0f} tok/s  ETA"),
                            TimeRemainingColumn(), disable=not (progress and self.enabled))
        self.task = self.bar.add_task("train", total=total, completed=start, loss=float("nan"), tok_s=0.0)
        self.bar.start()
        self.last_time, self.last_step = time.perf_counter(), start

    def train(self, step: int, metrics: dict[str, float]) -> dict[str, float]:
        """Record train metrics of `step` (adds tok_s since the last call); returns what was written."""
        now = time.perf_counter()
        tok_s = metrics["tokens"] * (step - self.last_step) / max(now - self.last_time, 1e-9)
        self.last_time, self.last_step = now, step
        row = {**metrics, "tok_s": tok_s}
        self.bar.update(self.task, completed=step, loss=row["loss"], tok_s=tok_s)
        self._write(step, "train", row)
        return row

    def eval(self, step: int, metrics: dict[str, float]) -> None:
        self._write(step, "eval", metrics)

    def _write(self, step: int, split: str, row: dict[str, float]) -> None:
        if self.enabled:
            self.jsonl.write(json.dumps({"step": step, "split": split, **row}) + "\n")
            self.jsonl.flush()
            self.tb.scalars(step, {f"{split}/{k}": v for k, v in row.items()})
            self.tb.flush()

    def close(self) -> None:
        self.bar.stop()
        if self.enabled:
            self.jsonl.close()
            self.tb.close()
