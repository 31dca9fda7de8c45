"""Run a ladder: every planned run through the trainer, one after another, into one results folder.

Rerunning skips finished runs (those with a result.json) and resumes an interrupted one from its newest checkpoint
(the trainer restores model, optimizer and data-iterator state, so the resumed run equals an uninterrupted one).
With `swarm`, runs of one size and multiple train together in one vmapped step (`variants.swarm`).
Growth variants train through `variants.grow.grown_run` (in their run folder); a CPT phase is a run that starts from
its base run's final checkpoint (`variants.cpt.continued`), so it must come after its base (the plan puts it there; a
shard whose base belongs to another process fails until that base has finished). Decay branches (`branches`) train
with the longest run of their size as one unit (`variants.wsd.train_branches`), in one process and device group.
Scale-out uses JAX's own engines: `shard=(i, k)` makes this process take runs i, i+k, i+2k, ... (one process per
host group of a pod slice, or per device group given with `devices`), all writing to the same folder. Within one
process, `device_groups=k` splits the devices into k disjoint equal groups and trains k runs at once, one per group,
from worker threads; the main thread does every store write, so the results equal the sequential runner's.
Across a cluster, `executor="ray"` makes each unit a Ray task (`ray_executor`): Ray places and retries them, and
this process, the driver, still does every store write.
"""

from __future__ import annotations

import queue
import time
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any, Callable, Sequence

from rich.console import Console

from ladderlab.data.mixture import normalise
from ladderlab.errors import LadderlabError
from ladderlab.ladders.config import LadderConfig
from ladderlab.ladders.plan import PlannedRun, mixtures, plan, train_config
from ladderlab.ladders.store import LadderStore, read_metrics
from ladderlab.console import make_console
from ladderlab.scaling.tables.runs import Runs


def check_domains(cfg: LadderConfig) -> None:
    """Every mixture and design domain must name a domain of the corpus."""
    from ladderlab.data.corpus import resolve_corpus
    from ladderlab.data.sources import list_domains

    domains = list(list_domains(resolve_corpus(cfg.data.corpus, cfg.data.cache_dir)))
    unknown = sorted(set(cfg.design_domains) - set(domains))
    if unknown:
        raise LadderlabError(f"design_domains: unknown domain {unknown[0]!r} in corpus {cfg.data.corpus!r} "
                             f"(known: {', '.join(domains)})")
    named = {f"mixtures.{k}": v for k, v in mixtures(cfg).items()}
    for name, weights in {**named, **{f"cpt.{k}.mixture": v["mixture"] for k, v in cfg.cpt.items()}}.items():
        try:
            normalise(weights, domains)
        except LadderlabError as e:
            raise LadderlabError(f"{name}: {e} in corpus {cfg.data.corpus!r}") from None


def use_compile_cache(cfg: LadderConfig) -> None:
    """Persist compiled programs under the cache, so runs of one shape compile init and eval once, and a
    resumed ladder recompiles nothing (unless the caller already chose a cache)."""
    import jax

    from ladderlab.data.corpus import cache_root

    if not jax.config.jax_compilation_cache_dir:
        jax.config.update("jax_compilation_cache_dir", str(cache_root(cfg.data.cache_dir) / "jax_cache"))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def run_ladder(cfg: LadderConfig, out: str | Path, *, shard: tuple[int, int] = (0, 1), devices: Sequence[Any] | None = None,
               console: Console | None = None, executor: str = "local", address: str | None = None) -> Runs | None:
    """Train every unfinished run of this process's share; return the runs table of all finished runs.
    executor: "local" (this process, on `devices` split into `cfg.device_groups`) or "ray" (every unit a Ray task
    on the cluster at `address`, the one already initialised, or a new local one; `ladders.ray_executor`)."""
    console = console or make_console()
    index, count = shard
    if not 0 <= index < count:
        raise LadderlabError(f"shard={index}/{count}: need 0 <= index < count")
    if executor not in ("local", "ray"):
        raise LadderlabError(f"executor={executor!r}: expected 'local' or 'ray'")
    if executor == "ray":
        from ladderlab.ladders.ray_executor import check_ray

        check_ray(cfg, shard, devices)
    elif address:
        raise LadderlabError(f"address={address!r}: only for executor='ray'")
    runs = plan(cfg)
    check_domains(cfg)
    mine = share(runs, index, count)
    groups = split_devices(cfg, list(devices) if devices is not None else None, mine) if executor == "local" else []
    store = LadderStore.create(out, cfg, runs)
    if executor == "local":  # a Ray driver trains nothing (its tasks set the cache up where they run)
        use_compile_cache(cfg)
    k = 0

    def record(unit: list[PlannedRun], todo: list[PlannedRun], seconds: float) -> None:
        nonlocal k
        for run in unit:
            k += 1
            head = f"[{k}/{len(mine)}] {run.run}"
            if run not in todo:
                console.print(f"{head}: finished earlier, loss {store.result(run.run)['rows'][-1]['loss']:.4f}")
                continue
            doc = store.finish(run.row(), cfg.data.seq_len, seconds)
            together = f", {len(unit)} runs with decay branches" if unit[0].branch_of else f", swarm of {len(unit)}"
            console.print(f"{head}: N={run.n:,} D={run.tokens:,} {run.steps} steps, loss {doc['rows'][-1]['loss']:.4f} "
                          f"({doc['seconds']:.1f} s{together if len(unit) > 1 else ''})")
        store.write_table()

    if executor == "ray":
        from ladderlab.ladders.ray_executor import train_on_ray

        train_on_ray(cfg, store, _units(mine, cfg.swarm), record, address)
    else:
        _train_units(cfg, out, _units(mine, cfg.swarm), groups, record)
    return store.write_table()


def share(runs: Sequence[PlannedRun], index: int, count: int) -> list[PlannedRun]:
    """Shard `index` of `count`: runs index, index + count, ...; a decay branch goes with the run it branches off."""
    position = {r.run: i for i, r in enumerate(runs)}
    return [r for r in runs if position[r.branch_of or r.run] % count == index]


def split_devices(cfg: LadderConfig, devices: list[Any] | None, runs: Sequence[PlannedRun]) -> list[list[Any] | None]:
    """`devices` (default: all) as `cfg.device_groups` disjoint equal groups ([devices] for one group), after checking
    that the mesh and every run's batch fit a group, so a misfit fails before any run starts."""
    n = cfg.device_groups
    if n == 1:
        return [devices]
    import jax

    from ladderlab.model.sharding import batch_sharding, make_mesh

    devices = jax.devices() if devices is None else devices
    if n < 1 or len(devices) % n:
        raise LadderlabError(f"device_groups={n}: must split the {len(devices)} devices into equal groups")
    if jax.process_count() > 1:
        raise LadderlabError(f"device_groups={n}: needs a single process (got {jax.process_count()}); use --shard")
    size = len(devices) // n
    groups = [devices[i * size:(i + 1) * size] for i in range(n)]
    try:
        mesh = make_mesh(cfg.mesh, groups[0])
        for run in runs:
            batch_sharding(mesh, run.batch_size)
    except LadderlabError as e:
        raise LadderlabError(f"device_groups={n} (groups of {size} devices): {e}") from None
    return groups


def train_unit(cfg: LadderConfig, out: str | Path, unit: list[PlannedRun],
               devices: list[Any] | None = None) -> tuple[list[PlannedRun], list[PlannedRun], float]:
    """Train one unit (a run, a swarm, or a run with its decay branches) of `cfg`'s ladder into `out`: its runs
    without a result, resuming from their checkpoints. Returns (unit, runs trained, seconds per run). The one
    training step of every executor: called in this process, in a device group's thread, or in a Ray task."""
    store = LadderStore(out)
    todo = [r for r in unit if store.result(r.run) is None]
    start = time.perf_counter()
    if unit[0].branch_of and todo:
        from ladderlab.ladders.variants.wsd import train_branches

        train_branches(train_config(cfg, unit[-1], out),
                       [(train_config(cfg, r, out), r.branch_step) for r in unit[:-1] if r in todo], devices,
                       stable_done=unit[-1] not in todo)
    elif len(unit) > 1 and todo:  # the whole swarm, so its checkpoints (named by members) stay valid
        from ladderlab.ladders.variants.swarm import train_swarm

        shards = max(k for k in range(1, max(cfg.swarm_shards, 1) + 1) if len(unit) % k == 0)
        train_swarm([train_config(cfg, r, out) for r in unit], str(store.root / "swarms" / unit[0].run), devices,
                    chunk=cfg.swarm_chunk or None, member_shards=shards)
    elif todo:
        _train_one(cfg, unit[0], out, devices)
    return unit, todo, (time.perf_counter() - start) / len(unit)


def _train_units(cfg: LadderConfig, out: str | Path, units: list[list[PlannedRun]], groups: list[list[Any] | None],
                 record: Callable[[list[PlannedRun], list[PlannedRun], float], None]) -> None:
    """Train each unit of unfinished runs (`train_unit`) and `record` it. With one device group: in order, in this
    thread. With several: each unit in a worker thread on whichever group is free, a CPT phase once its base has
    finished; `record` runs in this thread as units finish, so store writes never race, and an error cancels the
    units not yet started."""
    if len(groups) == 1:
        for unit in units:
            record(*train_unit(cfg, out, unit, groups[0]))
        return
    free: queue.SimpleQueue = queue.SimpleQueue()
    for group in groups:
        free.put(group)

    def on_a_free_group(unit: list[PlannedRun],
                        base: Future | None) -> tuple[list[PlannedRun], list[PlannedRun], float]:
        if base is not None:
            base.result()  # submitted earlier, so already running or done: no deadlock
        devices = free.get()
        try:
            return train_unit(cfg, out, unit, devices)
        finally:
            free.put(devices)

    futures: dict[str, Future] = {}
    pool = ThreadPoolExecutor(len(groups), thread_name_prefix="ladder-group")
    try:
        for unit in units:
            future = pool.submit(on_a_free_group, unit, futures.get(unit[0].base_run))
            futures.update({r.run: future for r in unit})
        for future in as_completed(set(futures.values())):
            record(*future.result())
    finally:
        pool.shutdown(cancel_futures=True)


def _train_one(cfg: LadderConfig, run: PlannedRun, out: str | Path, devices: list[Any] | None) -> None:
    """One run by the trainer; a growth variant by `grown_run`; a CPT phase from its base's final checkpoint."""
    from ladderlab.ladders.run.train import train

    tc = train_config(cfg, run, out)
    if run.operator:
        from ladderlab.ladders.variants.grow import GrowConfig, grown_run
        from ladderlab.model.growth.operators import parse_operator

        operator, dim = parse_operator(run.operator, "growth")
        grow = GrowConfig(train=tc, runs=(run.operator,), growth_factor=cfg.growth_factor,
                          growth_steps=run.growth_steps, seed=run.seed)
        grown_run(grow, operator, dim, tc.run_dir, devices=devices)
        return
    if run.base_run:
        from ladderlab.ladders.variants.cpt import continued

        tc = continued(tc, train_config(cfg, next(r for r in plan(cfg) if r.run == run.base_run), out))
    train(tc, devices=devices)


def _units(runs: list[PlannedRun], swarm: bool) -> list[list[PlannedRun]]:
    """What trains together, in order: a size's decay branches (by branch step) with the run they branch off last;
    with `swarm`, runs of one size and multiple (same shape, batch and steps; differing in mixture or seed); every
    other run alone: growth variants, CPT phases and their base runs (a phase starts from its base's own final
    checkpoint)."""
    groups: dict[tuple, list[PlannedRun]] = {}
    bases, heads = {run.base_run for run in runs}, {run.branch_of for run in runs}
    for run in runs:
        if run.branch_of or run.run in heads:
            key: tuple = ("branches", run.branch_of or run.run)
        elif swarm and not (run.operator or run.base_run or run.run in bases):
            key = (run.size, run.multiple)
        else:
            key = (run.run,)
        groups.setdefault(key, []).append(run)
    return [sorted(unit, key=lambda r: (not r.branch_of, r.branch_step)) if key[0] == "branches" else unit
            for key, unit in groups.items()]


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

