"""Results files in and out: numeric CSV columns (read, filtered, written) and JSON documents; errors name the file,
row and column at fault. Paths may be object-store URLs (`ladderlab.paths`)."""

from __future__ import annotations

import csv
import io
import json
import math
import re
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence, TypeVar

import numpy as np

from ladderlab.errors import LadderlabError
from ladderlab.paths import AnyPath, as_path, is_url, replacing

T = TypeVar("T")


def read_header(path: str | Path) -> list[str]:
    """The stripped header cells of a CSV file, which must exist and have a header row."""
    path = as_path(path)
    if not path.is_file():
        raise LadderlabError(f"{path}: file not found")
    with _open_csv(path) as f:
        header = next(csv.reader(f), None)
    if not header:
        raise LadderlabError(f"{path}: empty file (no header row)")
    return [h.strip() for h in header]


def read_columns(path: str | Path, columns: Sequence[str], text: Sequence[str] = ()) -> dict[str, np.ndarray]:
    """Numeric `columns` (float arrays) and string `text` columns of a CSV; row numbers in errors are file lines."""
    path = as_path(path)
    try:
        header = read_header(path)
        with _open_csv(path) as f:
            reader = csv.reader(f)
            next(reader)
            missing = [c for c in [*columns, *text] if c not in header]
            if missing:
                raise LadderlabError(f"{path}: missing column(s) {', '.join(missing)} (has: {', '.join(header)})")
            where = {c: header.index(c) for c in [*columns, *text]}
            out: dict[str, list] = {c: [] for c in where}
            for line, row in enumerate(reader, start=2):
                if not row:
                    continue
                if len(row) != len(header):
                    raise LadderlabError(f"{path}: row {line} has {len(row)} cells, header has {len(header)}")
                for c in columns:
                    out[c].append(_number(path, line, c, row[where[c]]))
                for c in text:
                    out[c].append(row[where[c]].strip())
    except (UnicodeDecodeError, csv.Error) as e:
        raise LadderlabError(f"{path}: not a readable CSV ({e})") from e
    if not out[columns[0] if columns else text[0]]:
        raise LadderlabError(f"{path}: no data rows")
    return {c: np.array(v, float) if c in columns else np.array(v, object) for c, v in out.items()}


def _open_csv(path: AnyPath) -> io.TextIOBase:
    """A CSV file opened for the csv module (newline=''): a local file as it is, an object read whole."""
    return io.StringIO(path.read_bytes().decode(), newline="") if is_url(path) else path.open(newline="")


def _number(path: AnyPath, line: int, column: str, cell: str) -> float:
    try:
        value = float(cell)
    except ValueError:
        raise LadderlabError(f"{path}: row {line}, column {column}: {cell.strip()!r} is not a number") from None
    if not math.isfinite(value):
        raise LadderlabError(f"{path}: row {line}, column {column}: {cell.strip()!r} is not finite")
    return value


_WHERE = re.compile(r"^\s*([^<>=!]+?)\s*(<=|>=|!=|=|<|>)\s*(.+?)\s*$")
_OPS = {"<=": np.less_equal, ">=": np.greater_equal, "<": np.less, ">": np.greater}


def read_filtered(
    path: str | Path, columns: Sequence[str], where: Sequence[str] = ()
) -> dict[str, np.ndarray]:
    """read_columns, keeping only rows that pass every condition: COL=TEXT, COL!=TEXT, or COL<=NUMBER (<, >=, >)."""
    conditions = []
    for cond in where:
        m = _WHERE.match(cond)
        if not m:
            raise LadderlabError(f"--where {cond!r}: expected COLUMN<op>VALUE with op one of = != < <= > >=")
        conditions.append(m.groups())
    numeric_where = {c for c, op, _ in conditions if op in _OPS}
    text_where = {c for c, op, _ in conditions if op not in _OPS} - set(columns)
    cols = read_columns(path, [*columns, *sorted(numeric_where - set(columns))], text=sorted(text_where))
    keep = np.ones(len(cols[columns[0]]), bool)
    for col, op, value in conditions:
        if op in _OPS:
            try:
                keep &= _OPS[op](cols[col], float(value))
            except ValueError:
                raise LadderlabError(f"--where {col}{op}{value}: {value!r} is not a number") from None
        else:
            cells = cols[col].astype(str) if col in text_where else np.array([f"{v:g}" for v in cols[col]])
            keep &= (cells == value) if op == "=" else (cells != value)
    if not keep.any():
        raise LadderlabError(f"{path}: no rows left after --where {' '.join(where)}")
    return {c: cols[c][keep] for c in columns}


def write_csv(path: str | Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Write a CSV: the header row, then each row's cells as given (format numbers before passing them)."""
    with replacing(path) as tmp, tmp.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def read_json(path: str | Path, what: str, build: Callable[[Any], T]) -> T:
    """build(the JSON document at path); a missing file, bad JSON or a missing or mistyped key is one error line
    naming the file and what it should have been."""
    try:
        return build(json.loads(as_path(path).read_text()))
    except FileNotFoundError:
        raise LadderlabError(f"{path}: file not found") from None
    except (ValueError, KeyError, TypeError) as e:
        raise LadderlabError(f"{path}: not a {what} JSON ({type(e).__name__}: {e})") from None
