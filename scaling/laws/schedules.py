"""Learning-rate schedules as arrays (the rate at every step), from a spec like `wsd:peak=1e-3,steps=1e4,decay=0.2`
or a step,lr CSV, for the LR-annealing and CPT laws to predict along.

Specs: KIND:KEY=VALUE,... with KIND one of constant, cosine, wsd; keys `peak` (the top rate), `steps` (the
length), `warmup` (linear warm-up steps from 0, default 0), `final` (the last rate as a fraction of peak, default 0
for cosine and wsd), and for wsd `decay` (cooldown length: a fraction of steps if < 1, else steps) and `shape`
(linear, cosine or sqrt: 1 - sqrt of the fraction done). Counts may be size labels (10k).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ladderlab.errors import LadderlabError
from ladderlab.scaling.tables.columns import read_columns
from ladderlab.units import parse_size

KINDS = {"constant": {"peak", "steps", "warmup"}, "cosine": {"peak", "steps", "warmup", "final"},
         "wsd": {"peak", "steps", "warmup", "final", "decay", "shape"}}
SHAPES = {"linear": lambda f: 1 - f, "cosine": lambda f: 0.5 * (1 + np.cos(np.pi * f)), "sqrt": lambda f: 1 - np.sqrt(f)}


def schedule_from_spec(text: str) -> np.ndarray:
    """The rate at steps 1..steps of a spec (see the module docstring)."""
    kind, _, rest = text.partition(":")
    kind = kind.strip()
    if kind not in KINDS:
        raise LadderlabError(f"schedule {text!r}: unknown kind {kind!r} (known: {', '.join(KINDS)}, or a step,lr CSV)")
    keys: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in rest.split(","))):
        key, sep, value = part.partition("=")
        if not sep or key.strip() not in KINDS[kind]:
            raise LadderlabError(f"schedule {text!r}: bad item {part!r} ({kind} takes {', '.join(sorted(KINDS[kind]))})")
        keys[key.strip()] = value.strip()
    shape = keys.pop("shape", "linear")
    if shape not in SHAPES:
        raise LadderlabError(f"schedule {text!r}: unknown shape {shape!r} (known: {', '.join(SHAPES)})")
    try:
        num = {k: parse_size(v) for k, v in keys.items()}
    except ValueError as e:
        raise LadderlabError(f"schedule {text!r}: {e}") from None
    for need in ("peak", "steps"):
        if need not in num:
            raise LadderlabError(f"schedule {text!r}: missing {need}=")
    steps, warmup = int(num["steps"]), int(num.get("warmup", 0))
    if steps < 1 or not 0 <= warmup < steps:
        raise LadderlabError(f"schedule {text!r}: need steps >= 1 and 0 <= warmup < steps")
    peak, final = num["peak"], num.get("final", 0.0) * num["peak"]
    s = np.arange(1, steps + 1, dtype=float)
    if kind == "constant":
        body = np.full(steps, peak)
    elif kind == "cosine":
        frac = np.clip((s - warmup) / (steps - warmup), 0.0, 1.0)
        body = final + (peak - final) * SHAPES["cosine"](frac)
    else:
        decay = num.get("decay", 0.2)
        n_decay = int(round(decay * steps)) if decay < 1 else int(decay)
        if not 0 < n_decay <= steps - warmup:
            raise LadderlabError(f"schedule {text!r}: decay {decay:g} must give 1..{steps - warmup} cooldown steps")
        start = steps - n_decay
        frac = np.clip((s - start) / n_decay, 0.0, 1.0)
        body = final + (peak - final) * SHAPES[shape](frac)
    return np.where(s <= warmup, peak * s / max(warmup, 1), body)


def read_schedule(path: str | Path, step: str = "step", lr: str = "lr") -> np.ndarray:
    """The rate at steps 1..last of a step,lr CSV, linear between the listed steps (the first rate before them)."""
    cols = read_columns(path, [step, lr])
    s, r = cols[step], cols[lr]
    if (s < 1).any() or (np.diff(np.sort(s)) == 0).any():
        raise LadderlabError(f"{path}: steps must be distinct and >= 1")
    order = np.argsort(s)
    return np.interp(np.arange(1, int(s.max()) + 1), s[order], r[order])


def schedule(text: str) -> np.ndarray:
    """A schedule from a spec or, when `text` names an existing file, a step,lr CSV."""
    return read_schedule(text) if Path(text).is_file() else schedule_from_spec(text)
