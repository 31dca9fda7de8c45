"""Import the OLMo ladder layout (Bhagia et al. 2024): one CSV per run named SIZE-KxC.csv, one row per checkpoint.

Task loss is the bits per byte of the correct answer (`eval/downstream_bpb/<key>_rc_5shot_bpb`), accuracy the
length-normalised RC accuracy (`eval/downstream/<key>_rc_5shot_len_norm`; BoolQ plain `acc`); MMLU is the
weighted mean of its four categories. N is the ladder's non-embedding count (untied output head included).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ladderlab.errors import LadderlabError
from ladderlab.scaling.tables.columns import read_columns, read_json
from ladderlab.scaling.tables.runs import Runs, concat

# Non-embedding parameters of each OLMo ladder size (file-name label -> N), from the ladder's released configs.
OLMO_N = {
    "190M": 190_354_176,
    "370M": 371_262_464,
    "600M": 597_382_464,
    "760M": 758_220_288,
    "1B": 1_279_395_840,
    "3B": 3_169_537_280,
    "7B": 6_887_575_552,
    "13B": 13_202_396_160,
}
TOKENS_PER_PARAM = 20  # 1xC

MMLU = {"stem": 0.215, "humanities": 0.335, "social_sciences": 0.219, "other": 0.231}
# task -> [(column key, weight)], each task on the split the paper reports
TASK_KEYS: dict[str, list[tuple[str, float]]] = {
    "mmlu": [(f"mmlu_{cat}_test", w) for cat, w in MMLU.items()],
    "hellaswag": [("hellaswag_val", 1.0)],
    "arc_challenge": [("arc_challenge_test", 1.0)],
    "arc_easy": [("arc_easy_test", 1.0)],
    "piqa": [("piqa_val", 1.0)],
    "csqa": [("csqa_val", 1.0)],
    "socialiqa": [("socialiqa_val", 1.0)],
    "openbookqa": [("openbookqa_test", 1.0)],
    "boolq": [("boolq_val", 1.0)],
    "winogrande": [("winogrande_val", 1.0)],
}
MAIN_TASKS = ("mmlu", "hellaswag", "arc_challenge", "arc_easy", "piqa", "csqa", "socialiqa", "openbookqa")

_FILE = re.compile(r"^(?P<size>[0-9.]+[MB])-(?P<mult>[0-9.]+)xC(?P<variant>-[\w-]+)?\.csv$")
_VAL = re.compile(r"^eval/(.+)-validation/CrossEntropyLoss$")


def loss_column(key: str) -> str:
    return f"eval/downstream_bpb/{key}_rc_5shot_bpb"


def acc_column(key: str) -> str:
    return f"eval/downstream/{key}_rc_5shot_{'acc' if key.startswith('boolq') else 'len_norm'}"


def read_n_table(path: str | Path) -> dict[str, float]:
    """A user's size -> N table: JSON {"190M": 190354176, ...} or CSV with columns size,N."""
    path = Path(path)
    if path.suffix == ".json":
        return read_json(path, "{size: N}",
                         lambda doc: {str(k): float(v["n"] if isinstance(v, dict) else v) for k, v in doc.items()})
    cols = read_columns(path, ["N"], text=["size"])
    return dict(zip(cols["size"].tolist(), cols["N"].tolist()))


def parse_multiple(text: str) -> float:
    """'5xC' or '5' -> 5.0."""
    try:
        return float(text.removesuffix("xC"))
    except ValueError:
        raise LadderlabError(f"{text!r} is not a token multiple (expected e.g. 5 or 5xC)") from None


def read_olmo_ladder(
    folder: str | Path,
    n_table: Mapping[str, float] | None = None,
    sizes: Sequence[str] | None = None,
    multiples: Sequence[float] | None = None,
    variants: bool = False,
) -> Runs:
    """Every SIZE-KxC.csv in `folder` (re-runs such as SIZE-KxC-rerun.csv only with variants=True) as a Runs table."""
    folder = Path(folder)
    if not folder.is_dir():
        raise LadderlabError(f"{folder}: not a folder of OLMo ladder run CSVs")
    n_of = {**OLMO_N, **(n_table or {})}
    unknown = sorted(set(sizes or ()) - set(n_of))
    if unknown:
        raise LadderlabError(f"size(s) {', '.join(unknown)} not in the N table (known: {', '.join(n_of)})")
    tables = []
    for path in sorted(folder.glob("*.csv")):
        m = _FILE.match(path.name)
        if not m or (m["variant"] and not variants):
            continue
        size, mult = m["size"], float(m["mult"])
        if (sizes and size not in sizes) or (multiples and not any(np.isclose(mult, k) for k in multiples)):
            continue
        if size not in n_of:
            raise LadderlabError(f"{path}: size {size} not in the N table (known: {', '.join(n_of)}); pass --n-table")
        tables.append(_read_run(path, f"{size}-{m['mult']}xC{m['variant'] or ''}", size, n_of[size], mult))
    if not tables:
        raise LadderlabError(f"{folder}: no run files SIZE-KxC.csv match sizes={sizes} multiples={multiples}")
    return concat(tables, str(folder))


def _read_run(path: Path, run: str, size: str, n: float, multiple: float) -> Runs:
    with path.open() as f:
        header = f.readline().strip().split(",")
    keys = [k for parts in TASK_KEYS.values() for k, _ in parts]
    needed = ["_step", "throughput/total_tokens", *(loss_column(k) for k in keys), *(acc_column(k) for k in keys)]
    lr = ["optim/learning_rate_group0"] if "optim/learning_rate_group0" in header else []
    vals = [h for h in header if _VAL.match(h)]
    missing = [c for c in needed if c not in header]
    if missing:
        raise LadderlabError(f"{path}: missing column(s) {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}")
    raw = read_columns(path, [*needed, *lr, *vals])
    rows = len(raw["_step"])
    cols: dict[str, np.ndarray] = {
        "run": np.full(rows, run, object),
        "size": np.full(rows, size, object),
        "multiple": np.full(rows, multiple),
        "N": np.full(rows, float(n)),
        "D": raw["throughput/total_tokens"],
        "step": raw["_step"],
    }
    if lr:
        cols["lr"] = raw[lr[0]]
    for task, parts in TASK_KEYS.items():
        total = sum(w for _, w in parts)
        cols[f"loss/{task}"] = sum(w * raw[loss_column(k)] for k, w in parts) / total
        cols[f"acc/{task}"] = sum(w * raw[acc_column(k)] for k, w in parts) / total
    for c in vals:
        cols[f"val/{_VAL.match(c)[1]}"] = raw[c]
    order = np.argsort(cols["D"], kind="stable")
    return Runs({c: v[order] for c, v in cols.items()}, str(path))
