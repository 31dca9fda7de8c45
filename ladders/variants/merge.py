"""Data ablations by merging (Na et al. 2024): score a candidate mixture without training it, by evaluating the
share-weighted average of partition models' parameters, each continued from one base run on one partition alone.

A ladder's partition models are its CPT phases whose `mixture` names one domain (weight > 0): that domain is the
phase's partition. All of them must continue the same base run (a ladder of one size, multiple and seed; other CPT
phases, such as a candidate mixture trained for comparison, are not partitions and are left alone). A candidate
mixture gives each partition a share; the shares are renormalised to sum to 1, the partition models' parameters are
averaged with them in fp32, and the average is evaluated on every validation domain by the trainer's own eval step
(`Trainer.evaluate`). `ablate` writes `<out>/ablation/proxy_losses.csv` (the mixtures' id column, then `val/<domain>`
per validation domain, nats per token: what `fit mixing-law --losses` reads) and `ablation.json` (the partitions and
the compute of both routes: FLOPs (6ND for training, 2N per evaluated token) and seconds).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ladderlab.errors import LadderlabError
from ladderlab.ladders.config import LadderConfig
from ladderlab.ladders.plan import PlannedRun, plan, train_config
from ladderlab.paths import as_path, write_atomic
from ladderlab.scaling.tables.columns import read_columns, read_header, write_csv


@dataclass(frozen=True)
class Ablation:
    """What to merge: the base run, partition domain -> its CPT phase, and the candidate mixtures (ids, K x P shares
    over the partitions in `parts` order, each row summing to 1) read from `source` (whose id column is `id_col`)."""

    base: PlannedRun
    parts: dict[str, PlannedRun]
    id_col: str
    ids: list[str]
    shares: np.ndarray
    source: str


def partitions(cfg: LadderConfig) -> tuple[PlannedRun, dict[str, PlannedRun]]:
    """(the base run, partition domain -> its phase): the CPT phases of `cfg` that train on one domain alone."""
    runs = plan(cfg)
    phases = [r for r in runs if r.base_run and sum(w > 0 for w in r.weights.values()) == 1]
    if not phases:
        raise LadderlabError("cpt: no phase trains on one domain alone; a merging ablation needs one per partition "
                             "(e.g. cpt = {'code': {'base': 'equal', 'mixture': {'code': 1.0}, 'fraction': 0.5}, ...})")
    bases = sorted({r.base_run for r in phases})
    if len(bases) > 1:
        raise LadderlabError(f"the partition phases continue {len(bases)} base runs ({', '.join(bases)}); a merging "
                             "ablation averages phases of one base run: keep one size, multiple and seed")
    parts: dict[str, PlannedRun] = {}
    for run in phases:
        domain = next(d for d, w in run.weights.items() if w > 0)
        if domain in parts:
            raise LadderlabError(f"cpt: phases {parts[domain].mixture!r} and {run.mixture!r} both train on "
                                 f"{domain!r} alone; keep one partition model per domain")
        parts[domain] = run
    return next(r for r in runs if r.run == bases[0]), parts


def read_candidates(cfg: LadderConfig, path: str | Path) -> Ablation:
    """The ablation of `cfg` for the mixtures in CSV `path` (first column the id, then share columns, each naming a
    partition; a partition without a column has share 0; each row is renormalised over the partitions)."""
    base, parts = partitions(cfg)
    header = read_header(path)
    id_col, named = header[0], header[1:]
    for col in named:
        if col not in parts:
            raise LadderlabError(f"{path}: share column {col!r} names no partition (partitions: {', '.join(parts)})")
    cols = read_columns(path, named, text=[id_col])
    ids = [str(i) for i in cols[id_col]]
    shares = np.stack([cols.get(d, np.zeros(len(ids))) for d in parts], axis=1)
    for i, row in enumerate(shares):
        if not (np.isfinite(row).all() and (row >= 0).all() and row.sum() > 0):
            raise LadderlabError(f"{path}: row {i + 2} (id {ids[i]!r}): shares {row.tolist()} must be finite, >= 0 "
                                 "and not all 0")
    if len(set(ids)) < len(ids):
        raise LadderlabError(f"{path}: id column {id_col!r} repeats an id")
    return Ablation(base, parts, id_col, ids, shares / shares.sum(axis=1, keepdims=True), str(path))


def average(trees: list[Any], weights: np.ndarray) -> Any:
    """The weighted sum of parameter trees of one shape, computed in fp32 and returned in each leaf's own dtype."""
    import jax
    import jax.numpy as jnp

    def leaf(*xs: jax.Array) -> jax.Array:
        total = sum(jnp.float32(w) * x.astype(jnp.float32) for w, x in zip(weights, xs))
        return total.astype(xs[0].dtype)

    return jax.tree.map(leaf, *trees)


def merged_losses(cfg: LadderConfig, out: str | Path, ablation: Ablation) -> tuple[dict[str, np.ndarray], dict]:
    """Per validation domain (`val/<domain>`), the loss of each candidate's merged model (nats per token, in
    candidate order), and {"seconds", "tokens"}: the evaluations' wall time and the tokens each one computes."""
    import jax.numpy as jnp

    from ladderlab.ladders.run.checkpoint import read_params
    from ladderlab.ladders.run.train import Trainer, pipeline_data
    from ladderlab.ladders.variants.cpt import continued

    configs = [train_config(cfg, run, out) for run in ablation.parts.values()]
    trainer = Trainer(configs[0])
    _, eval_sets, bytes_per_token = pipeline_data(configs[0])
    # each phase's final parameters (`continued` names a finished run's final checkpoint, or says it is missing)
    trees = [read_params(continued(tc, tc).init_from, trainer.abstract["params"]) for tc in configs]
    start, rows = time.perf_counter(), []
    for weights in ablation.shares:
        state = {"params": average(trees, weights), "step": jnp.zeros((), jnp.int32)}
        rows.append(trainer.evaluate(state, eval_sets, bytes_per_token)[0])
    seconds = time.perf_counter() - start
    domains = sorted(k[:-len("/loss")] for k in rows[0] if k.endswith("/loss"))
    tokens = sum(b["inputs"].size for batches in eval_sets.values() for b in batches)  # every position is computed
    return {f"val/{d}": np.array([r[f"{d}/loss"] for r in rows]) for d in domains}, {"seconds": seconds,
                                                                                      "tokens": tokens}


def compute(ablation: Ablation, seconds: dict[str, float], evals: dict) -> dict[str, Any]:
    """FLOPs and seconds of the merging route (base + partition models + one evaluation per candidate) against
    training every candidate from the same base for a partition phase's mean tokens; `seconds` maps a run to its
    training time (that route's seconds are the base's plus K x the partition phases' mean)."""
    base, parts, k = ablation.base, list(ablation.parts.values()), len(ablation.ids)
    phase_flops = float(np.mean([p.flops for p in parts]))
    phase_s = float(np.mean([seconds[p.run] for p in parts]))
    eval_flops = 2.0 * base.n * evals["tokens"] * k
    merging = {"base": base.flops, "partitions": sum(p.flops for p in parts), "evaluations": eval_flops}
    merging_s = {"base": seconds[base.run], "partitions": sum(seconds[p.run] for p in parts),
                 "evaluations": evals["seconds"]}
    training = {"base": base.flops, "mixtures": k * phase_flops}
    training_s = {"base": seconds[base.run], "mixtures": k * phase_s}
    return {"candidates": k, "N": base.n, "eval_tokens": evals["tokens"],
            "flops": {"merging": {**merging, "total": sum(merging.values())},
                      "training": {**training, "total": sum(training.values())}},
            "seconds": {"merging": {**merging_s, "total": sum(merging_s.values())},
                        "training": {**training_s, "total": sum(training_s.values())}}}


def ablate(cfg: LadderConfig, out: str | Path, ablation: Ablation) -> dict[str, Any]:
    """Evaluate every candidate's merged model of the finished ladder in `out`; write `<out>/ablation/`
    proxy_losses.csv and ablation.json (returned, with the losses under "losses")."""
    from ladderlab.ladders.store import LadderStore

    losses, evals = merged_losses(cfg, out, ablation)
    store = LadderStore(out)
    seconds = {r.run: store.result(r.run)["seconds"] for r in (ablation.base, *ablation.parts.values())}
    folder = as_path(out) / "ablation"
    folder.mkdir(parents=True, exist_ok=True)
    write_csv(folder / "proxy_losses.csv", [ablation.id_col, *losses],
              ([i, *(f"{v[k]:.9g}" for v in losses.values())] for k, i in enumerate(ablation.ids)))
    doc = {"mixtures": ablation.source, "base_run": ablation.base.run,
           "partitions": {d: r.run for d, r in ablation.parts.items()},
           "shares": {i: dict(zip(ablation.parts, map(float, s))) for i, s in zip(ablation.ids, ablation.shares)},
           **compute(ablation, seconds, evals)}
    write_atomic(folder / "ablation.json", json.dumps(doc, indent=1))
    return {**doc, "losses": {c: v.tolist() for c, v in losses.items()}}
