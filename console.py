"""The report stage's terminal: the console every command prints to, number formatting, and the table of dict rows."""

from __future__ import annotations

import sys
from typing import Any, Sequence

import numpy as np
from rich.console import Console
from rich.table import Table


def make_console() -> Console:
    """A console that keeps tables on one line when output goes to a file or pipe."""
    return Console(width=None if sys.stdout.isatty() else 132)


def fmt(v: float | None) -> str:
    """Four significant digits, scientific only where needed; "-" for a missing or non-finite value."""
    if v is None or not np.isfinite(v):
        return "-"
    return f"{v:.4g}"


def cell(v: Any) -> str:
    """One table cell: integers with thousands separators, floats by `fmt`, anything else as text."""
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        return f"{v:,}"
    if isinstance(v, (float, np.floating)) or v is None:
        return fmt(v)
    return str(v)


def rows_table(rows: Sequence[dict[str, Any]], title: str, columns: Sequence[str] | None = None) -> Table:
    """A table of dict rows (columns: those given, else the first row's keys); text columns are left-aligned,
    numbers right-aligned, and a column `k` shows `[k_lo, k_hi]` beside its value when the row has them."""
    columns = list(rows[0]) if columns is None else list(columns)
    table = Table(title=title, title_justify="left")
    for col in columns:
        table.add_column(col, justify="left" if rows and isinstance(rows[0].get(col), str) else "right")
    for row in rows:
        cells = []
        for col in columns:
            text = cell(row.get(col))
            if f"{col}_lo" in row:
                text += f" [{fmt(row[f'{col}_lo'])}, {fmt(row[f'{col}_hi'])}]"
            cells.append(text)
        table.add_row(*cells)
    return table
