"""Run a ladder: every planned run through the trainer, one after another, into one results folder.

Rerunning skips finished runs (those with a result.json) and resumes an interrupted one from its newest checkpoint
(the trainer restores model, optimizer and data-iterator state, so the resumed run equals an uninterrupted one).
With `swarm`, runs of one size and multiple train together in one vmapped step (`ladders.swarm`).
Growth variants train through `grow_run.grown_run` (in their run folder); a CPT phase starts from its base run's
final checkpoint (`ladder_cpt`), so it must come after its base (the plan puts it there; a shard whose base
belongs to another process fails until that base has finished).
Scale-out uses JAX's own engines: `shard=(i, k)` makes this process take runs i, i+k, i+2k, ... (one process per
host group of a pod slice, or per device group given with `devices`), all writing to the same folder.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

from rich.console import Console

from ladderlab.data.mixture import normalise
from ladderlab.errors import LadderlabError
from ladderlab.ladders.ladder_config import LadderConfig
from ladderlab.ladders.ladder_plan import PlannedRun, mixtures, plan, train_config
from ladderlab.ladders.ladder_store import LadderStore, read_metrics
from ladderlab.scaling.report import make_console
from ladderlab.scaling.runs import Runs


def check_domains(cfg: LadderConfig) -> None:
    """Every mixture and design domain must name a domain of the corpus."""
    from ladderlab.data.corpus import resolve_corpus
    from ladderlab.data.sources import list_domains

    domains = list(list_domains(resolve_corpus(cfg.corpus, cfg.cache_dir)))
    unknown = sorted(set(cfg.design_domains) - set(domains))
    if unknown:
        raise LadderlabError(f"design_domains: unknown domain {unknown[0]!r} in corpus {cfg.corpus!r} "
                             f"(known: {', '.join(domains)})")
    named = {f"mixtures.{k}": v for k, v in mixtures(cfg).items()}
    for name, weights in {**named, **{f"cpt.{k}.mixture": v["mixture"] for k, v in cfg.cpt.items()}}.items():
        try:
            normalise(weights, domains)
        except LadderlabError as e:
            raise LadderlabError(f"{name}: {e} in corpus {cfg.corpus!r}") from None


def use_compile_cache(cfg: LadderConfig) -> None:
    """Persist compiled programs under the cache, so runs of one shape compile init and eval once, and a
    resumed ladder recompiles nothing (unless the caller already chose a cache)."""
    import jax

    from ladderlab.data.corpus import cache_root

    if not jax.config.jax_compilation_cache_dir:
        jax.config.update("jax_compilation_cache_dir", str(cache_root(cfg.cache_dir) / "jax_cache"))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def run_ladder(cfg: LadderConfig, out: str | Path, *, shard: tuple[int, int] = (0, 1), devices: Sequence[Any] | None = None,
               console: Console | None = None) -> Runs | None:
    """Train every unfinished run of this process's share; return the runs table of all finished runs."""
    console = console or make_console()
    index, count = shard
    if not 0 <= index < count:
        raise LadderlabError(f"shard={index}/{count}: need 0 <= index < count")
    runs = plan(cfg)
    check_domains(cfg)
    store = LadderStore.create(out, cfg, runs)
    use_compile_cache(cfg)
    devices = list(devices) if devices is not None else None
    mine = [r for i, r in enumerate(runs) if i % count == index]
    groups = _swarms(mine) if cfg.swarm else [[r] for r in mine]
    k = 0
    for group in groups:
        todo = [r for r in group if store.result(r.run) is None]
        start = time.perf_counter()
        if len(group) > 1 and todo:  # the whole swarm, so its checkpoints (named by members) stay valid
            from ladderlab.ladders.swarm import train_swarm

            train_swarm([train_config(cfg, r, out) for r in group], str(store.root / "swarms" / group[0].run), devices)
        elif todo:
            _train_one(cfg, group[0], out, devices)
        seconds = (time.perf_counter() - start) / len(group)
        for run in group:
            k += 1
            head = f"[{k}/{len(mine)}] {run.run}"
            if run not in todo:
                console.print(f"{head}: finished earlier, loss {store.result(run.run)['rows'][-1]['loss']:.4f}")
                continue
            doc = store.finish(run.row(), cfg.seq_len, seconds)
            console.print(f"{head}: N={run.n:,} D={run.tokens:,} {run.steps} steps, loss {doc['rows'][-1]['loss']:.4f} "
                          f"({doc['seconds']:.1f} s{f', swarm of {len(group)}' if len(group) > 1 else ''})")
        store.write_table()
    return store.write_table()


def _train_one(cfg: LadderConfig, run: PlannedRun, out: str | Path, devices: list[Any] | None) -> None:
    """One run by the trainer; a growth variant by `grown_run`; a CPT phase from its base's final checkpoint."""
    from ladderlab.ladders.train import train

    tc = train_config(cfg, run, out)
    if run.operator:
        from ladderlab.ladders.grow_config import GrowConfig
        from ladderlab.ladders.grow_run import grown_run

        operator, _, dim = run.operator.partition(":")
        grow = GrowConfig(train=tc, runs=(run.operator,), growth_factor=cfg.growth_factor,
                          growth_steps=run.growth_steps, seed=run.seed)
        grown_run(grow, operator, dim, tc.run_dir, devices=devices)
        return
    if run.base_run:
        from ladderlab.ladders.ladder_cpt import start_from_base

        base = next(r for r in plan(cfg) if r.run == run.base_run)
        start_from_base(tc, train_config(cfg, base, out), devices)
    train(tc, devices=devices)


def _swarms(runs: list[PlannedRun]) -> list[list[PlannedRun]]:
    """Runs grouped by size and multiple (same shape, batch and steps; differing in mixture or seed), in order;
    growth variants and CPT phases alone."""
    groups: dict[tuple, list[PlannedRun]] = {}
    for run in runs:
        key = (run.run,) if run.operator or run.base_run else (run.size, run.multiple)
        groups.setdefault(key, []).append(run)
    return list(groups.values())


def status_rows(out: str | Path) -> list[dict[str, Any]]:
    """One row per planned run: state (finished / running-or-interrupted / pending), step reached, final loss."""
    store = LadderStore(out)
    rows = []
    for r in store.meta()["plan"]:
        done = store.result(r["run"])
        train, _ = read_metrics(store.metrics_path(r))
        step = r["steps"] if done else max(train, default=0)
        state = "finished" if done else "started" if step else "pending"
        rows.append({"run": r["run"], "state": state, "step": step, "steps": r["steps"],
                     "loss": done["rows"][-1]["loss"] if done else None,
                     "seconds": done["seconds"] if done else None, "est_s": r["est_s"]})
    return rows

