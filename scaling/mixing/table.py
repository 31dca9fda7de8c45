"""Mixture tables: per-run training-domain proportions joined on an id column to per-run validation losses.

Every check names the file, row (file line), column or id at fault, so a bad table is one clear line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ladderlab.errors import LadderlabError
from ladderlab.scaling.tables.columns import read_columns, read_header

SUM_TOLERANCE = 0.01  # RegMix's published shares sum to 1 +- 0.004 after rounding to 3 decimals


@dataclass(frozen=True)
class MixtureTable:
    """ids (N), proportions (domain -> N array) and losses (validation column -> N array), rows aligned."""

    ids: np.ndarray
    proportions: dict[str, np.ndarray]
    losses: dict[str, np.ndarray]

    @property
    def domains(self) -> list[str]:
        return list(self.proportions)


def read_proportions(path: str | Path, on: str, domains: Sequence[str] | None = None,
                     missing_as_zero: bool = False) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """ids and proportion columns of a mixtures CSV (all non-id columns, or exactly `domains`, those absent from
    the CSV counting as share 0 with `missing_as_zero`), checked."""
    path = Path(path)
    header = read_header(path)
    if on not in header:
        raise LadderlabError(f"{path}: no id column {on!r} (has: {', '.join(header)})")
    if domains is not None:
        unknown = sorted(set(header) - {on} - set(domains))
        if unknown:
            raise LadderlabError(f"{path}: unknown domain column(s) {', '.join(unknown)} (the law knows: {', '.join(domains)})")
    wanted = [h for h in (domains or header) if h != on and (h in header or not missing_as_zero)]
    cols = read_columns(path, wanted, text=[on])
    props = {d: cols[d] if d in cols else np.zeros(len(cols[on])) for d in (domains or wanted) if d != on}
    check_proportions(props, str(path), first_line=2)
    return cols[on], props


def check_proportions(props: Mapping[str, np.ndarray], source: str, first_line: int = 0) -> None:
    """Shares must be finite, in [0, 1] and sum to 1 within SUM_TOLERANCE per row."""
    r_NxM = np.stack([np.asarray(v, float) for v in props.values()], axis=1)
    for j, d in enumerate(props):
        bad = np.flatnonzero(~np.isfinite(r_NxM[:, j]) | (r_NxM[:, j] < 0) | (r_NxM[:, j] > 1))
        if bad.size:
            raise LadderlabError(f"{source}: row {bad[0] + first_line}, domain {d}: share {r_NxM[bad[0], j]} is not in [0, 1]")
    sums = r_NxM.sum(axis=1)
    bad = np.flatnonzero(np.abs(sums - 1.0) > SUM_TOLERANCE)
    if bad.size:
        raise LadderlabError(
            f"{source}: row {bad[0] + first_line}: proportions sum to {sums[bad[0]]:.4g}, not 1 (tolerance {SUM_TOLERANCE})"
        )


def read_mixture_table(mixtures: str | Path, losses: str | Path, on: str = "id", targets: Sequence[str] = ()) -> MixtureTable:
    """Join a mixtures CSV and a losses CSV on the id column; `targets` picks loss columns (default: all)."""
    ids, props = read_proportions(mixtures, on)
    loss_path = Path(losses)
    header = read_header(loss_path)
    if on not in header:
        raise LadderlabError(f"{loss_path}: no id column {on!r} (has: {', '.join(header)})")
    columns = list(targets) or [h for h in header if h != on]
    loss_cols = read_columns(loss_path, columns, text=[on])  # NaN or blank cells are named by row and column
    return join(ids, props, loss_cols.pop(on), loss_cols, str(mixtures), str(loss_path))


def join(
    ids_m: np.ndarray, props: dict[str, np.ndarray], ids_l: np.ndarray, losses: dict[str, np.ndarray], m_src: str, l_src: str
) -> MixtureTable:
    """Rows of both tables matched by id; every id must appear exactly once in each."""
    for ids, src in ((ids_m, m_src), (ids_l, l_src)):
        uniq, counts = np.unique(ids.astype(str), return_counts=True)
        if (counts > 1).any():
            raise LadderlabError(f"{src}: id {str(uniq[counts > 1][0])!r} appears {counts.max()} times")
    where_l = {str(i): k for k, i in enumerate(ids_l)}
    missing = [str(i) for i in ids_m if str(i) not in where_l]
    extra = sorted(set(where_l) - {str(i) for i in ids_m})
    if missing or extra:
        what = f"id {missing[0]!r} of {m_src} is not in {l_src}" if missing else f"id {extra[0]!r} of {l_src} is not in {m_src}"
        raise LadderlabError(f"ids do not join: {what} ({len(missing) + len(extra)} unmatched)")
    order = np.array([where_l[str(i)] for i in ids_m])
    losses = {c: v[order] for c, v in losses.items()}
    for c, v in losses.items():
        bad = np.flatnonzero(v <= 0)
        if bad.size:
            raise LadderlabError(f"{l_src}: id {str(ids_m[bad[0]])!r}, column {c}: loss {v[bad[0]]} is not positive")
    return MixtureTable(ids_m, props, losses)
