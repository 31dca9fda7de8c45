"""`ladder run --executor ray` (the `ladderlab[ray]` extra): every unit of a ladder (a run, a swarm, or a run with its
decay branches) is one Ray task asking the cluster for `cfg.ray_resources`; a CPT phase's task waits for its base's.

A task whose worker dies (a preempted node, a killed process) is retried up to `cfg.ray_retries` times and resumes
from the run's newest checkpoint, so nothing finished is trained twice; an error raised by the training itself is
not retried. With `cfg.ray_hosts` > 1 a unit trains on that many hosts at once (a TPU pod slice, several GPU nodes):
one task per host in a placement group, joined by `jax.distributed` with a coordinator on the first; when any host
dies the whole group is stopped and restarted together (the survivors would wait for it forever). Tasks write only
their own run folders; the driver (the process calling `run_ladder`) writes the results store as units finish, so
the store keeps its single writer. The results folder and the corpus must be reachable from every node under the
same name (an object store such as gs://, or a shared file system); each node builds its own token cache.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from ladderlab.errors import LadderlabError
from ladderlab.ladders.config import LadderConfig
from ladderlab.ladders.plan import PlannedRun
from ladderlab.ladders.store import LadderStore

Result = tuple[list[PlannedRun], list[PlannedRun], float]  # (unit, runs trained, seconds per run), as `record` takes


def ray_module(who: str) -> Any:
    """The ray package, or one line naming the extra to install (`who`: what asked for it)."""
    import importlib.util

    if getattr(importlib.util.find_spec("ray"), "origin", None) is None:  # absent, or only a folder named ray on
        raise LadderlabError(f"{who}: needs the ray extra: pip install 'ladderlab[ray]'")  # sys.path (Ray's temp dir)
    import ray

    return ray


def check_ray(cfg: LadderConfig, shard: tuple[int, int], devices: Sequence[Any] | None) -> None:
    """Before anything is written: the extra is installed and no local placement setting competes with Ray's."""
    if shard != (0, 1):
        raise LadderlabError(f"--shard {shard[0]}/{shard[1]} with --executor ray: Ray places every run itself; "
                             "drop --shard")
    if devices is not None or cfg.device_groups != 1:
        raise LadderlabError(f"device_groups={cfg.device_groups} with --executor ray: each Ray task trains on the "
                             "devices Ray gives it; ask for them with ray_resources")
    if cfg.ray_hosts < 1 or cfg.ray_retries < 0:
        raise LadderlabError(f"ray_hosts={cfg.ray_hosts}, ray_retries={cfg.ray_retries}: need hosts >= 1, retries >= 0")
    ray_module("--executor ray")


def task_options(cfg: LadderConfig) -> dict[str, Any]:
    """`ray.remote` options of one host's task: resources ("CPU" and "GPU" as Ray's num_cpus / num_gpus, any other
    name, e.g. "TPU", as a custom resource), retries on a dead worker only, and `ray_env` in its environment."""
    resources = dict(cfg.ray_resources)
    options: dict[str, Any] = {"num_cpus": resources.pop("CPU", 0), "num_gpus": resources.pop("GPU", 0),
                               "resources": resources, "max_retries": cfg.ray_retries, "retry_exceptions": False}
    if cfg.ray_env:
        options["runtime_env"] = {"env_vars": {k: str(v) for k, v in cfg.ray_env.items()}}
    return options


def _task(cfg: LadderConfig, out: str, unit: list[PlannedRun], base: Any = None, coordinator: str = "",
          rank: int = 0) -> Result:
    """One unit in a Ray worker (`base`: the base unit's result, passed only so that Ray runs this after it); with a
    `coordinator`, as host `rank` of `cfg.ray_hosts` (a fresh worker process: jax.distributed starts once)."""
    if coordinator:
        import jax

        jax.distributed.initialize(coordinator, cfg.ray_hosts, rank)
    from ladderlab.ladders.runner import train_unit, use_compile_cache

    use_compile_cache(cfg)
    return train_unit(cfg, out, unit)


def _free_address() -> str:
    """host:port for the jax.distributed coordinator, on the node this runs on."""
    import socket

    import ray

    with socket.socket() as s:
        s.bind(("", 0))
        return f"{ray.util.get_node_ip_address()}:{s.getsockname()[1]}"


def _gang(cfg: LadderConfig, out: str, unit: list[PlannedRun], base: Any = None) -> Result:
    """One unit on `cfg.ray_hosts` hosts (a task of its own that owns them): a placement group of one bundle per host,
    a coordinator address on the first, one `_task` per host; retried as a group when a host's worker dies."""
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    options = {k: v for k, v in task_options(cfg).items() if k != "max_retries"}
    bundle = {"CPU": options["num_cpus"], "GPU": options["num_gpus"], **options["resources"]}
    host = ray.remote(max_calls=1)(_task)
    failure = None
    for _ in range(cfg.ray_retries + 1):
        group = placement_group([{k: v for k, v in bundle.items() if v}] * cfg.ray_hosts, strategy="SPREAD")
        try:
            ray.get(group.ready())
            on = [PlacementGroupSchedulingStrategy(group, placement_group_bundle_index=i) for i in range(cfg.ray_hosts)]
            coordinator = ray.get(ray.remote(_free_address).options(num_cpus=0, scheduling_strategy=on[0]).remote())
            refs = [host.options(**options, max_retries=0, scheduling_strategy=on[i]).remote(cfg, out, unit, None,
                                                                                            coordinator, i)
                    for i in range(cfg.ray_hosts)]
            pending = refs
            try:
                while pending:
                    done, pending = ray.wait(pending, num_returns=1)
                    ray.get(done[0])
                return ray.get(refs[0])
            except ray.exceptions.RayTaskError:
                raise  # the training's own error: a retry would raise it again
            except ray.exceptions.RayError as e:  # a host died: stop the others, which would wait for it forever
                failure = e
                for ref in pending:
                    ray.cancel(ref, force=True)
        finally:
            remove_placement_group(group)
    raise LadderlabError(f"{unit[0].run}: its {cfg.ray_hosts}-host task group failed {cfg.ray_retries + 1} times; "
                         f"last: {str(failure).splitlines()[0]}")


def train_on_ray(cfg: LadderConfig, store: LadderStore, units: list[list[PlannedRun]],
                 record: Callable[[list[PlannedRun], list[PlannedRun], float], None],
                 address: str | None = None) -> None:
    """Submit every unit with an unfinished run in `store` as a task (on the Ray this process already joined, else
    the cluster at `address`, else a new local one) and `record` each as it finishes; an error cancels the tasks
    still pending. `check_ray` has vouched for the extra."""
    import ray

    if not ray.is_initialized():
        ray.init(address=address)
    task = ray.remote(_task).options(**task_options(cfg)) if cfg.ray_hosts == 1 else \
        ray.remote(_gang).options(num_cpus=0, max_retries=cfg.ray_retries)
    out, refs = str(store.root), {}
    for unit in units:
        if all(store.result(r.run) for r in unit):
            record(unit, [], 0.0)
            continue
        ref = task.remote(cfg, out, unit, refs.get(unit[0].base_run))
        refs.update({r.run: ref for r in unit})
    pending = list(dict.fromkeys(refs.values()))
    try:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            record(*ray.get(done[0]))
    finally:
        for ref in pending:
            ray.cancel(ref)
