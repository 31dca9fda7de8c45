"""The runs table: one row per checkpoint per run, the input of the task laws.

Columns: `run` (id), `N` (parameters as the ladder counts them), `D` (tokens so far), optionally `step`, `lr`,
`size` and `multiple` (the run's xC), `flops`, growth variants' `operator` ("<operator>:<dim>"), `growth_factor`
and `growth_tokens`, continued runs' `base_run`, WSD decay branches' `branch_of`, per-task `loss/<task>` and `acc/<task>` (accuracy as a fraction)
and per-domain `val/<domain>` validation losses. Our ladders write it as CSV; importers fill it from other layouts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ladderlab.errors import LadderlabError
from ladderlab.paths import as_path
from ladderlab.scaling.tables.columns import read_columns, read_header, write_csv

TEXT = ("run", "size", "mixture", "operator", "base_run", "branch_of")
REQUIRED = ("run", "N", "D")


@dataclass(frozen=True)
class Runs:
    """Columns of equal length; rows of one run are contiguous and ordered by D."""

    cols: dict[str, np.ndarray]
    source: str

    def __post_init__(self) -> None:
        missing = [c for c in REQUIRED if c not in self.cols]
        if missing:
            raise LadderlabError(f"{self.source}: runs table lacks column(s) {', '.join(missing)}")

    def __getitem__(self, column: str) -> np.ndarray:
        if column not in self.cols:
            raise LadderlabError(f"{self.source}: no column {column!r}")
        return self.cols[column]

    def __len__(self) -> int:
        return len(self.cols["run"])

    @property
    def tasks(self) -> list[str]:
        """Tasks with both a loss and an accuracy column."""
        return [c[5:] for c in self.cols if c.startswith("loss/") and f"acc/{c[5:]}" in self.cols]

    @property
    def run_ids(self) -> list[str]:
        """Run ids in table order."""
        return list(dict.fromkeys(self.cols["run"].tolist()))

    def rows_of(self, run: str) -> np.ndarray:
        """Row indices of one run, ordered by tokens."""
        idx = np.flatnonzero(self.cols["run"] == run)
        return idx[np.argsort(self.cols["D"][idx], kind="stable")]

    def select(self, keep: np.ndarray) -> Runs:
        """The rows where `keep` is true."""
        return Runs({c: v[keep] for c, v in self.cols.items()}, self.source)

    def require_task(self, task: str) -> None:
        if task not in self.tasks:
            raise LadderlabError(f"{self.source}: task {task!r} not in the runs (has: {', '.join(self.tasks) or 'none'})")

    def write_csv(self, path: str | Path) -> None:
        """Write the table as CSV (floats with full precision)."""
        names = list(self.cols)
        write_csv(path, names, ([self.cols[c][i] if c in TEXT else repr(float(self.cols[c][i])) for c in names]
                                for i in range(len(self))))


def read_runs(path: str | Path) -> Runs:
    """Read a runs-table CSV (a file, or a folder holding runs.csv)."""
    path = as_path(path)
    if path.is_dir():
        path = path / "runs.csv"
    header = read_header(path)
    text = [c for c in TEXT if c in header]
    numeric = [c for c in header if c not in text]
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise LadderlabError(f"{path}: missing column(s) {', '.join(missing)} (a runs table needs run, N, D)")
    cols = read_columns(path, numeric, text=text)
    return Runs({c: cols[c] for c in header}, str(path))


def concat(tables: Sequence[Runs], source: str) -> Runs:
    """Stack tables with the same columns (e.g. one per run file)."""
    names = list(tables[0].cols)
    for t in tables[1:]:
        if list(t.cols) != names:
            raise LadderlabError(f"{t.source}: columns differ from {tables[0].source}")
    return Runs({c: np.concatenate([t.cols[c] for t in tables]) for c in names}, source)


def select_ladder(runs: Runs, sizes: Sequence[str] | None, multiples: Sequence[float] | None,
                  mixture: str | None = None) -> Runs:
    """Rows of runs whose `size` is in sizes, whose `multiple` (xC) is in multiples and whose `mixture` is
    mixture (None: all)."""
    keep = np.ones(len(runs), bool)
    if mixture:
        have = set(runs["mixture"].tolist()) if "mixture" in runs.cols else set()
        if mixture not in have:
            raise LadderlabError(f"{runs.source}: mixture {mixture!r} not in the runs (has: {', '.join(sorted(have))})")
        keep &= runs["mixture"] == mixture
    if sizes:
        have = set(runs["size"].tolist())
        unknown = [s for s in sizes if s not in have]
        if unknown:
            raise LadderlabError(f"{runs.source}: size(s) {', '.join(unknown)} not in the runs (has: {', '.join(sorted(have))})")
        keep &= np.isin(runs["size"], list(sizes))
    if multiples:
        keep &= np.isclose(runs["multiple"][:, None], np.asarray(multiples, float)[None, :]).any(axis=1)
    if not keep.any():
        raise LadderlabError(f"{runs.source}: no runs with sizes={sizes}, multiples={multiples} and mixture={mixture}")
    return runs.select(keep)
