"""Swarm training: many runs of one shape trained together, vmapped over a leading member axis M in one jitted step.

Members share the model, batch, sequence length, steps, mesh and optimizer constants; each has its own data stream
(mixture, data seed), init seed and learning-rate schedule (a table lr_MxS of every member's rate at every step).
The swarm mesh is (member, data, fsdp, tensor): `member_shards` device groups each compute their own slice of
the members (no data moves between groups), and within a group a member shards as a lone run's would. `chunk`
vmaps that many members at once and loops over the chunks inside the step (all at once by default, best on
accelerators; on a CPU, one member per chunk on one device per core is fastest, see
benchmarks/swarm_throughput.py). Each member's run_dir gets what `run.train.train` writes (config.gin,
metrics.jsonl, TensorBoard); the swarm checkpoints its stacked state and every member's data position in one folder,
and trains, resumes (or reports a finished swarm) through the one loop (`loop.run_loop`).
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P

from ladderlab.errors import LadderlabError
from ladderlab.ladders.run.checkpoint import Checkpoints
from ladderlab.ladders.run.config import TrainConfig
from ladderlab.ladders.run.loop import run_loop
from ladderlab.ladders.run.state import seeded_state
from ladderlab.ladders.run.step import BATCH_KEYS, eval_sums, lr_table, train_step
from ladderlab.ladders.run.train import Trainer, evaluate, pipeline_data
from ladderlab.model.sharding import MESH_AXES
from ladderlab.paths import AnyPath, as_path, is_url

MEMBER = "member"  # the swarm mesh's leading axis, over which the member axis is sharded

# Fields that may differ between members; every other TrainConfig field (dotted for nested configs) is shared.
PER_MEMBER = ("run_dir", "checkpoint_dir", "seed", "progress", "lr", "schedule", "warmup_steps", "min_lr_ratio",
              "decay_fraction", "data.mixture", "data.seed", "data.train_tokens", "data.max_epochs",
              "data.on_overrepeat")


def check_swarm(cfgs: Sequence[TrainConfig]) -> None:
    """Raise a one-line LadderlabError naming the first shared field on which a member differs from member 0."""
    if not cfgs:
        raise LadderlabError("swarm: no member configs")
    runs = _member_dirs(cfgs)
    for i, run in enumerate(runs):
        if runs.index(run) != i:
            raise LadderlabError(f"swarm member {i}: run_dir={cfgs[i].run_dir!r} is also member {runs.index(run)}'s")
    first = _fields(cfgs[0])
    for i, cfg in enumerate(cfgs[1:], 1):
        for key, value in _fields(cfg).items():
            if key not in PER_MEMBER and value != first[key]:
                raise LadderlabError(f"swarm member {i} ({cfg.run_dir}): {key}={value!r} differs from member 0's "
                                     f"{first[key]!r}; members may differ only in {', '.join(PER_MEMBER)}")


def learning_rates(cfgs: Sequence[TrainConfig]) -> np.ndarray:
    """lr_MxS: member m's learning rate at step s (its own schedule), the per-member values the step reads."""
    return np.stack([lr_table(c) for c in cfgs])


class MemberIterators:
    """Every member's data iterator as one: `next` gives a list of batches, and the state (JSON bytes) holds every
    position, so grain's orbax handler saves and restores the whole swarm's data as one checkpoint item."""

    def __init__(self, iterators: Sequence[Any]):
        self.iterators = list(iterators)

    def __next__(self) -> list[dict[str, np.ndarray]]:
        return [next(it) for it in self.iterators]

    def get_state(self) -> bytes:
        return json.dumps([it.get_state() for it in self.iterators]).encode()

    def set_state(self, state: bytes) -> None:
        for it, s in zip(self.iterators, json.loads(state), strict=True):
            it.set_state(s)

    def start_prefetch(self) -> None:
        for it in self.iterators:
            if hasattr(it, "start_prefetch"):
                it.start_prefetch()


class Swarm:
    """The compiled pieces of a swarm: stacked state shardings, vmapped init, train step and eval step."""

    def __init__(self, cfgs: Sequence[TrainConfig], devices: list[Any] | None = None, chunk: int | None = None,
                 member_shards: int = 1):
        """chunk: members vmapped at once, chunks run in a loop inside the step (default all: one vmap).
        member_shards: K device groups, each training M/K of the members on its own (the member axis is sharded,
        so no data moves between groups); each member's mesh (cfg.mesh) lives within a group."""
        check_swarm(cfgs)
        self.cfgs, cfg, M, K = list(cfgs), cfgs[0], len(cfgs), member_shards
        devices = list(jax.devices() if devices is None else devices)
        if chunk is not None and chunk < 1:
            raise LadderlabError(f"swarm: chunk={chunk} must be at least 1 member")
        if K < 1 or M % K or len(devices) % K:
            raise LadderlabError(f"swarm: member_shards={K} must divide the {M} members and the {len(devices)} "
                                 "devices")
        group = len(devices) // K
        self.members = [Trainer(cfg, devices[g * group:(g + 1) * group]) for g in range(K)]  # one per group
        member = self.members[0]
        self.graphdef, self.optimizer = member.graphdef, member.optimizer  # every member's optimizer-state tree
        self.mesh = jax.make_mesh((K, *member.mesh.devices.shape), (MEMBER, *MESH_AXES),
                                  axis_types=(AxisType.Auto,) * 4, devices=devices)
        stacked = lambda s: NamedSharding(self.mesh, P(MEMBER, *s.spec))  # noqa: E731
        self.shardings = jax.tree.map(stacked, member.shardings)
        self.abstract = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct((M, *x.shape), x.dtype, sharding=s),
                                     member.abstract, self.shardings)
        self.batch_sharding = stacked(member.batch_sharding)
        replicated, per_member = NamedSharding(self.mesh, P()), NamedSharding(self.mesh, P(MEMBER))
        self.lr_MxS = jax.device_put(learning_rates(cfgs), per_member)
        graphdef, optimizer, steps = self.graphdef, self.optimizer, cfg.steps

        def member_step(state, batch, lr_S):
            lr = lr_S[jnp.minimum(state["step"], steps - 1)]
            return train_step(graphdef, optimizer, state, batch, lr, grad_accum=cfg.grad_accum, z_loss=cfg.z_loss)

        self.step = jax.jit(lambda state, batch, lr_MxS: _members(lambda a: member_step(*a), (state, batch, lr_MxS),
                                                                  K, chunk),
                            in_shardings=(self.shardings, {k: self.batch_sharding for k in BATCH_KEYS}, per_member),
                            out_shardings=(self.shardings, replicated), donate_argnums=0)
        self.eval_step = jax.jit(lambda params, batch: _members(lambda p: eval_sums(graphdef, p, batch), params, K,
                                                                 chunk),
                                 in_shardings=(self.shardings["params"], None), out_shardings=replicated)

    def init(self) -> dict:
        """Every member's state from its own seed (bit-identical to `init_state`), stacked on axis 0."""
        seeds = jnp.asarray([c.seed for c in self.cfgs], jnp.int32)
        return jax.jit(jax.vmap(seeded_state(self.cfgs[0].model, self.optimizer)), out_shardings=self.shardings)(seeds)

    def lr(self, step: int) -> jax.Array:
        """Every member's whole schedule (the step picks its own rate by its state's step count)."""
        return self.lr_MxS

    def rows(self, metrics: dict) -> list[dict[str, float]]:
        """The fetched [M]-stacked metrics as one row per member."""
        return [{k: float(v[i]) for k, v in metrics.items()} for i in range(len(self.cfgs))]

    def global_batch(self, local: list[dict[str, np.ndarray]]) -> dict[str, jax.Array]:
        """Each member's local rows -> one [M, batch, seq] array per key, rows split over data x fsdp."""
        cfg = self.cfgs[0]
        rows, shape = cfg.batch_size // jax.process_count(), (len(self.cfgs), cfg.batch_size, cfg.data.seq_len)
        for i, batch in enumerate(local):
            for key in BATCH_KEYS:
                if key not in batch or batch[key].shape != (rows, cfg.data.seq_len):
                    got = batch[key].shape if key in batch else None
                    raise LadderlabError(f"swarm member {i} batch {key!r}: expected {(rows, cfg.data.seq_len)}, "
                                         f"got {got}")
        return {k: jax.make_array_from_process_local_data(self.batch_sharding, np.stack([b[k] for b in local]), shape)
                for k in BATCH_KEYS}

    def evaluate(self, state: dict, eval_sets: dict[str, list[dict]],
                 bytes_per_token: dict[str, float] | None = None) -> list[dict[str, float]]:
        """Per member: what `train.evaluate` gives a lone run."""
        stacked = evaluate(self.eval_step, state["params"], eval_sets, bytes_per_token)
        return [{k: float(v[i]) for k, v in stacked.items()} for i in range(len(self.cfgs))]

    def unstack(self, state: dict) -> list[dict]:
        """Every member's slice of the stacked state, sharded as a lone run's on its group's devices: the tree
        `train` returns."""
        per_group = len(self.cfgs) // len(self.members)
        return [jax.device_put(jax.tree.map(lambda x: x[i], state), self.members[i // per_group].shardings)
                for i in range(len(self.cfgs))]


def train_swarm(cfgs: Sequence[TrainConfig], swarm_dir: str, devices: list[Any] | None = None,
                stop_after: int | None = None, *, chunk: int | None = None, member_shards: int = 1,
                batches: Sequence[Iterator] | None = None,
                eval_sets: dict[str, list[dict]] | None = None,
                bytes_per_token: dict[str, float] | None = None) -> list[dict[str, Any]]:
    """Train every member together (resuming from swarm_dir's checkpoints) to their shared steps; per member, return
    what `train` returns: {"params", "train", "eval", "state"}.

    stop_after: end (with a checkpoint) after this step, as a preemption would; a later call resumes the swarm.
    chunk: members vmapped at once (default all); member_shards: device groups the members are split over.
    batches: one grain DatasetIterator per member (default: `data.pipeline.train_batches` of each member's data);
    eval_sets and bytes_per_token: shared by all members (default: the pipeline's, from member 0's data config).
    """
    cfg = cfgs[0] if cfgs else None
    if cfg is not None and cfg.distributed:
        jax.distributed.initialize()
    swarm = Swarm(cfgs, devices, chunk, member_shards)  # mesh, batch and schedule checks
    if cfg.init_from:
        raise LadderlabError(f"swarm: init_from={cfg.init_from!r}: swarm members start from their seeds; train a run "
                             f"that starts from a checkpoint alone")
    if batches is None:
        data = [pipeline_data(c, evals=i == 0) for i, c in enumerate(cfgs)]  # eval sets: member 0's data config
        batches, (_, eval_sets, bytes_per_token) = [d[0] for d in data], data[0]
    if len(batches) != len(cfgs):
        raise LadderlabError(f"swarm: {len(batches)} data iterators for {len(cfgs)} members")
    checkpoints = Checkpoints(as_path(swarm_dir) / "checkpoints", cfg.keep_last, cfg.keep_every)
    state, results = run_loop(swarm, checkpoints, MemberIterators(batches), swarm.init, eval_sets=eval_sets,
                              bytes_per_token=bytes_per_token, stop_after=stop_after, swarm_dir=swarm_dir,
                              claim=lambda: _claim(as_path(swarm_dir), cfgs))
    for result, member_state in zip(results, swarm.unstack(state)):
        result["state"] = member_state
    return results


def _members(fn: Any, args: Any, groups: int, chunk: int | None) -> Any:
    """fn over the leading member axis M of args: vmapped over `groups` slices of the member axis (one per slice of
    the mesh's member axis, so each device group computes its own members), and within a group vmapped `chunk`
    members at a time, the chunks in a loop (all at once when chunk is None)."""
    M = jax.tree.leaves(args)[0].shape[0]

    def group(group_args):
        if (chunk or M) >= M // groups:
            return jax.vmap(fn)(group_args)
        return jax.lax.map(fn, group_args, batch_size=chunk)

    if groups == 1:
        return group(args)
    split = jax.tree.map(lambda x: x.reshape(groups, M // groups, *x.shape[1:]), args)
    out = jax.vmap(group, spmd_axis_name=MEMBER)(split)
    return jax.tree.map(lambda x: x.reshape(M, *x.shape[2:]), out)


def _claim(swarm_dir: AnyPath, cfgs: Sequence[TrainConfig]) -> None:
    """Record the members' run_dirs in swarm_dir/members.json; refuse a folder that holds a different swarm."""
    path, members = swarm_dir / "members.json", _member_dirs(cfgs)
    if path.exists() and json.loads(path.read_text()) != members:
        raise LadderlabError(f"{path}: this swarm_dir holds other members {json.loads(path.read_text())}")
    if jax.process_index() == 0:
        swarm_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(members))


def _member_dirs(cfgs: Sequence[TrainConfig]) -> list[str]:
    """The members' run_dirs, local ones made absolute (URLs as given)."""
    return [c.run_dir if is_url(c.run_dir) else os.path.abspath(c.run_dir) for c in cfgs]


def _fields(cfg: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted field name -> value over a config and the dataclasses nested in it."""
    out = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            out.update(_fields(value, f"{prefix}{f.name}."))
        else:
            out[f"{prefix}{f.name}"] = value
    return out
