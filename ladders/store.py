"""A ladder's results folder: `ladder.json` (config + plan), `runs/<id>/` per run (the trainer's config.gin,
metrics.jsonl, checkpoints, and `result.json` once finished) and `runs.csv`, the runs table `scaling/` reads.

Every file this module writes is written atomically (`paths.write_atomic`), so a killed ladder leaves either the
old file or the new one; the folder may be on an object store (gs://...), written by one process at a time. A folder belongs to one ladder config: opening it with another is an error.
"""

from __future__ import annotations

import json
import os
from typing import Any, Sequence

import numpy as np

from ladderlab.config import config_to_dict
from ladderlab.errors import LadderlabError
from ladderlab.ladders.config import NOT_RESULTS, LadderConfig
from ladderlab.ladders.plan import PlannedRun
from ladderlab.ladders.run.metrics import read_rows
from ladderlab.paths import AnyPath, as_path, replacing, write_atomic
from ladderlab.scaling.tables.runs import TEXT as TEXT_COLUMNS
from ladderlab.scaling.tables.runs import Runs


TASK_COLUMNS = (("loss", "bpb"), ("acc", "acc"))  # runs.csv's loss/<task>, acc/<task> from metrics' <task>/bpb, /acc


def fingerprint(cfg: LadderConfig) -> dict[str, Any]:
    """The config fields that decide a ladder's results (the data config's as `data.<field>`)."""
    doc = config_to_dict(cfg)
    doc.update({f"data.{k}": v for k, v in doc.pop("data").items()})
    return {k: v for k, v in doc.items() if k not in NOT_RESULTS}


def read_metrics(path: AnyPath) -> tuple[dict[int, dict], dict[int, dict]]:
    """(train rows, eval rows) by step from a metrics.jsonl; a step logged twice (a resumed run) keeps the last,
    and a line cut short by a kill is skipped."""
    train, evals = {}, {}
    for row in read_rows(path):
        (train if row.get("split") == "train" else evals)[int(row["step"])] = row
    return train, evals


def shares(plan_row: dict[str, Any], domains: Sequence[str]) -> dict[str, float]:
    """A run's `share/<domain>` columns: its training share of each of `domains` (a CPT phase's: its own
    mixture's), from its plan row's weights."""
    weights = plan_row["weights"]
    return {f"share/{d}": weights.get(d, 0.0) / sum(weights.values()) for d in domains}


class LadderStore:
    """The results folder of one ladder."""

    def __init__(self, root: str | os.PathLike):
        self.root = as_path(root)

    @classmethod
    def create(cls, root: str | os.PathLike, cfg: LadderConfig, runs: Sequence[PlannedRun]) -> LadderStore:
        """Open `root` for `cfg` (creating it), refusing a folder written by a different ladder config."""
        store = cls(root)
        doc = {"config": fingerprint(cfg), "name": cfg.name, "plan": [r.row() for r in runs]}
        if store.meta_path.is_file():
            new = json.loads(json.dumps(doc["config"]))
            defaults = json.loads(json.dumps(fingerprint(LadderConfig())))  # fields added since the folder was made
            old = {**defaults, **store.meta()["config"]}
            changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
            if changed:
                raise LadderlabError(f"{store.root}: results folder of another ladder config (differs in "
                                     f"{', '.join(changed)}); pick a new --out or restore the config")
        elif store.root.exists() and any(store.root.iterdir()):
            raise LadderlabError(f"{store.root}: exists and is not a ladder results folder (no ladder.json)")
        (store.root / "runs").mkdir(parents=True, exist_ok=True)
        write_atomic(store.meta_path, json.dumps(doc, indent=1))
        return store

    @property
    def meta_path(self) -> AnyPath:
        return self.root / "ladder.json"

    def meta(self) -> dict[str, Any]:
        if not self.meta_path.is_file():
            raise LadderlabError(f"{self.root}: not a ladder results folder (no ladder.json)")
        return json.loads(self.meta_path.read_text())

    def run_dir(self, run: str) -> AnyPath:
        return self.root / "runs" / run

    def result(self, run: str) -> dict[str, Any] | None:
        """The finished run's result, or None while it is unfinished."""
        path = self.run_dir(run) / "result.json"
        return json.loads(path.read_text()) if path.is_file() else None

    def metrics_path(self, plan_row: dict[str, Any]) -> AnyPath:
        """A run's metrics.jsonl (a grown variant's grown phase logs in its `variants.grow` subfolder)."""
        sub = plan_row["operator"].replace(":", "-") if plan_row.get("operator") else ""
        return self.run_dir(plan_row["run"]) / sub / "metrics.jsonl"

    def finish(self, plan_row: dict[str, Any], seq_len: int, seconds: float) -> dict[str, Any]:
        """Turn a trained run's metrics into its runs-table rows and mark it finished. D and flops count what came
        before the run's last phase (the small model's tokens, or the CPT base run's) plus that phase; `flops` is
        6ND with N non-embedding (the C of the laws), not `model.counts`' exact `causal` count that MFU uses. Every row has
        `operator` ("scratch" unless grown), `growth_factor` (the depth or width factor), `growth_tokens`, `base_run` ("" unless continued) and `branch_of` (a WSD decay branch's
        stable run, "" otherwise).
        Each eval domain gives `val/<domain>` (nats per token), `nt_bpb/<domain>` (bits per byte) and
        `nt_acc/<domain>` (top-1 next-token accuracy); each multiple-choice task (`data.tasks`) the columns
        `scaling.tasks` fits: `loss/<task>`, bits per byte of the true answers, and `acc/<task>`, its
        length-normalised accuracy."""
        train, evals = read_metrics(self.metrics_path(plan_row))
        if plan_row["steps"] not in evals:
            raise LadderlabError(f"{self.metrics_path(plan_row)}: no evaluation at the last step {plan_row['steps']}")
        per_step, grown = plan_row["batch"] * seq_len, bool(plan_row.get("operator"))
        extra = {"operator": plan_row["operator"] if grown else "scratch",
                 "growth_factor": plan_row["g"] if grown else 1, "growth_tokens": plan_row["tokens_before"] if grown else 0,
                 "base_run": plan_row.get("base_run", ""), "branch_of": plan_row.get("branch_of", "")}
        rows = []
        for step in sorted(s for s in evals if s > 0):  # a grown model's eval at step 0 has no train row
            val = {k[:-5]: v for k, v in evals[step].items() if k.endswith("/loss")}
            names = sorted({k[:-4] for k in evals[step] if k.endswith("/bpb")} - set(val))
            columns = [*((f"nt_{key}/{d}", f"{d}/{key}") for d in sorted(val) for key in ("bpb", "acc")),
                       *((f"{key}/{t}", f"{t}/{metric}") for t in names for key, metric in TASK_COLUMNS)]
            tasks = {column: evals[step][key] for column, key in columns if key in evals[step]}
            rows.append({"run": plan_row["run"], "size": plan_row["size"], "mixture": plan_row["mixture"],
                         "multiple": plan_row["multiple"], "seed": plan_row["seed"], "N": plan_row["N"],
                         "D": plan_row.get("tokens_before", 0) + step * per_step, "step": step,
                         "lr": train[step]["lr"] if step in train else float("nan"),
                         "train_loss": train[step]["loss"] if step in train else float("nan"),
                         "loss": float(np.mean(list(val.values()))), **{f"val/{d}": v for d, v in sorted(val.items())},
                         **tasks,
                         "flops": plan_row.get("flops_before", 0.0) + 6.0 * plan_row["N"] * step * per_step, **extra})
        curve = [[s, train[s]["loss"]] for s in sorted(train)]
        doc = {"run": plan_row["run"], "rows": rows, "train_curve": curve, "seconds": seconds}
        write_atomic(self.run_dir(plan_row["run"]) / "result.json", json.dumps(doc))
        return doc

    def table(self) -> Runs | None:
        """The runs table of every finished run, in plan order, with its `share/<domain>` columns when every run's
        mixture names its domains (None if none has finished)."""
        plan = self.meta()["plan"]  # share columns only when every run names its mixture's domains (none if a
        # mixture is {}, every corpus domain equally, or the plan predates plan rows' weights): never a blank cell
        named = all(r.get("weights") for r in plan)
        domains = sorted({d for r in plan for d in r["weights"]}) if named else []
        rows = []
        for r in plan:
            extra = shares(r, domains) if domains else {}
            rows += [{**row, **extra} for row in (self.result(r["run"]) or {}).get("rows", [])]
        if not rows:
            return None
        names = list(dict.fromkeys(k for row in rows for k in row))
        cols = {c: np.array([row.get(c, "") for row in rows]) if c in TEXT_COLUMNS else
                np.array([row.get(c, np.nan) for row in rows], float) for c in names}
        return Runs(cols, str(self.root / "runs.csv"))

    def write_table(self) -> Runs | None:
        """Rewrite runs.csv (atomically) from the finished runs."""
        table = self.table()
        if table is not None:
            with replacing(self.root / "runs.csv") as tmp:
                table.write_csv(tmp)
        return table
