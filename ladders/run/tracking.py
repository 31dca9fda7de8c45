"""Weights & Biases tracking (the `ladderlab[wandb]` extra), beside metrics.jsonl and TensorBoard: one W&B run per
training run (each swarm member, each phase of a grown run: each run folder), and a ladder report's fitted laws and
plots as one more run of the ladder's group.

A run's W&B id is kept in its run folder (`wandb_id`, written atomically beside config.gin and the checkpoints), so
a run resumed from its checkpoint continues the same tracked run (`resume="allow"`); a fresh start makes a new id.
Steps go in as the `step` metric, which every train/ and eval/ metric is plotted against, not as W&B's own step
(which only grows): a run resumed from step S logs S+1... again after a kill, as metrics.jsonl does.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Any

from ladderlab.errors import LadderlabError
from ladderlab.ladders.run.config import TrainConfig, _gin_fields
from ladderlab.paths import AnyPath, as_path, is_url, write_atomic

ID_FILE = "wandb_id"


def wandb_module(who: str) -> Any:
    """The wandb package, or one line naming the extra to install (`who`: the setting that asked for it)."""
    try:
        import wandb
    except ImportError:
        raise LadderlabError(f"{who}: W&B tracking needs the wandb extra: pip install 'ladderlab[wandb]'") from None
    return wandb


def check(cfg: TrainConfig) -> None:
    """Before a tracked run writes anything: the extra is installed."""
    if cfg.wandb_project:
        wandb_module(f"run_dir {cfg.run_dir}: wandb_project={cfg.wandb_project!r}")


class WandbRun:
    """The W&B run of one training run, resumed (same id) when the run resumes from a checkpoint at `start` > 0."""

    def __init__(self, cfg: TrainConfig, start: int, folder: Path):
        """folder: a local folder for W&B's own files (the run folder, or its local stage for an object store)."""
        wandb = wandb_module(f"run_dir {cfg.run_dir}: wandb_project={cfg.wandb_project!r}")
        id_file = as_path(cfg.run_dir) / ID_FILE
        run_id = id_file.read_text().strip() if start and id_file.is_file() else None
        self.run = wandb.init(project=cfg.wandb_project, entity=cfg.wandb_entity or None, group=cfg.wandb_group or None,
                              mode=cfg.wandb_mode or None, name=cfg.wandb_name or as_path(cfg.run_dir).name, id=run_id,
                              resume="allow", dir=str(folder), config=dataclasses.asdict(cfg), job_type="train",
                              reinit="create_new", settings=wandb.Settings(console="off"))
        if self.run.id != run_id:
            write_atomic(id_file, self.run.id + "\n")
        self.run.define_metric("step")
        for split in ("train", "eval"):
            self.run.define_metric(f"{split}/*", step_metric="step")

    def log(self, step: int, split: str, row: dict[str, float]) -> None:
        self.run.log({"step": step, **{f"{split}/{k}": float(v) for k, v in row.items()}})

    def finish(self) -> None:
        self.run.finish()


def log_report(run_dir: AnyPath, report: AnyPath, summary: dict[str, Any]) -> str | None:
    """When a ladder's runs were tracked (`run_dir`'s config.gin names a wandb_project), log its report as a run
    of their group (job type "report"): the numbers of the fitted laws (summary.json) as the run's summary, the
    file itself, and the plots as images; return that run's id (None: not tracked)."""
    saved = run_dir / "config.gin"
    fields = {k: v for k, (_, v) in _gin_fields(saved.read_text()).items()} if saved.is_file() else {}
    if not fields.get("wandb_project"):
        return None
    wandb = wandb_module(f"{saved}: wandb_project={fields['wandb_project']!r}")
    with tempfile.TemporaryDirectory(prefix="ladderlab-report-") as tmp:
        local = Path(tmp) if is_url(report) else Path(report)  # a report on an object store is read to local disk
        for name in ["summary.json", *summary.get("plots", [])] if is_url(report) else ():
            (local / name).write_bytes((report / name).read_bytes())
        group = fields.get("wandb_group") or None
        run = wandb.init(project=fields["wandb_project"], entity=fields.get("wandb_entity") or None, group=group,
                         mode=fields.get("wandb_mode") or None, name=f"{group or summary['name']} report",
                         job_type="report", dir=str(local), reinit="create_new", settings=wandb.Settings(console="off"))
        run.summary.update(numbers({k: summary[k] for k in ("scaling", "mixing", "tasks", "target") if k in summary}))
        run.save(str(local / "summary.json"), base_path=str(local), policy="now")
        if summary.get("plots"):
            run.log({f"report/{name.removesuffix('.png')}": wandb.Image(str(local / name)) for name in summary["plots"]})
        run.finish()
        return run.id


def numbers(doc: Any, prefix: str = "") -> dict[str, float]:
    """The numbers of a nested JSON document, flattened to {"a/b/0": x} (booleans and text left out)."""
    if isinstance(doc, dict):
        return {k: v for key, value in doc.items() for k, v in numbers(value, f"{prefix}{key}/").items()}
    if isinstance(doc, (list, tuple)):
        return {k: v for i, value in enumerate(doc) for k, v in numbers(value, f"{prefix}{i}/").items()}
    if isinstance(doc, (int, float)) and not isinstance(doc, bool):
        return {prefix.rstrip("/"): float(doc)}
    return {}
