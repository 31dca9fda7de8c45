"""One run: `Trainer` (mesh, sharded state, compiled steps) and `train`, which drives it through `loop.run_loop`.

The Trainer takes an optional per-step parameter transform (growth's mask ramp); `train` starts from the seed's
init or `init_from`'s parameters, or resumes the run's own checkpoint.
"""

from __future__ import annotations

import math
import re
from typing import Any, Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np

from ladderlab.errors import LadderlabError
from ladderlab.ladders.run.checkpoint import Checkpoints, read_params
from ladderlab.ladders.run.config import TrainConfig
from ladderlab.ladders.run.loop import run_loop
from ladderlab.ladders.run.state import abstract_model, abstract_state, init_state, state_shardings
from ladderlab.ladders.run.step import BATCH_KEYS, jit_eval_step, jit_train_step, lr_table, make_optimizer
from ladderlab.model.counts import flops_per_token, param_counts
from ladderlab.model.sharding import batch_sharding, make_mesh
from ladderlab.paths import as_path


MEMORY = ("argument", "output", "temp", "generated_code")  # per-device sizes the compiled step reports


class Trainer:
    """The compiled pieces of a run for one config and mesh (what `loop.run_loop` drives; also `compile_only`).

    `step(state, batch, lr)` takes the step's learning rate, so Trainers whose configs differ only in their
    schedule (lr, warm-up, steps) share one jitted step and its compilation. transform(params, step) -> the
    parameters the model computes with at that state step (growth's mask ramp); the optimizer updates the raw ones.
    `lrs`: the learning rate of each step 1..steps, in place of the config's schedule (growth's post-growth rates).
    """

    def __init__(self, cfg: TrainConfig, devices: list[Any] | None = None,
                 transform: Callable[[dict, jax.Array], dict] | None = None, lrs: np.ndarray | None = None):
        self.cfg, self.cfgs, self.transform = cfg, [cfg], transform
        self.mesh = make_mesh(cfg.mesh, devices)
        self.optimizer = make_optimizer(cfg)  # AdamW whose rate the step sets from the fed lr
        self.graphdef, abstract_params = abstract_model(cfg.model)
        self.shardings = state_shardings(abstract_params, self.optimizer, self.mesh)
        self.abstract = abstract_state(abstract_params, self.optimizer, self.shardings)
        self.batch_sharding = batch_sharding(self.mesh, cfg.batch_size)
        table = lr_table(cfg)  # also checks the config's schedule
        self.lrs = table if lrs is None else lrs
        self.step = jit_train_step(self.graphdef, self.optimizer, cfg, self.shardings, self.batch_sharding, transform)
        self.eval_step = jit_eval_step(self.graphdef, self.shardings["params"], self.mesh)
        self._transformed = None if transform is None else jax.jit(
            transform, in_shardings=(self.shardings["params"], self.shardings["step"]),
            out_shardings=self.shardings["params"])

    def init(self, params: dict | None = None, opt: Any = None) -> dict:
        """A state at step 0: the seed's initialisation, or `params` (and `opt`, default a fresh optimizer state),
        placed in the state's shardings."""
        if params is None:
            return init_state(self.cfg.model, self.cfg.seed, self.optimizer, self.shardings)
        params = jax.device_put(params, self.shardings["params"])
        if opt is None:
            opt = jax.jit(self.optimizer.init, out_shardings=self.shardings["opt"])(params)
        return {"params": params, "opt": jax.device_put(opt, self.shardings["opt"]),
                "step": jax.device_put(jnp.zeros((), jnp.int32), self.shardings["step"])}

    def lr(self, step: int) -> np.float32:
        """The learning rate fed to step `step` (from 1)."""
        return self.lrs[step - 1]

    def rows(self, metrics: dict) -> list[dict[str, float]]:
        return [{k: float(v) for k, v in metrics.items()}]

    def evaluate(self, state: dict, eval_sets: dict[str, list[dict]],
                 bytes_per_token: dict[str, float] | None = None) -> list[dict[str, float]]:
        """[`evaluate`'s figures] of the parameters the model computes with at the state's step."""
        params = state["params"] if self._transformed is None else self._transformed(state["params"], state["step"])
        return [{k: float(v) for k, v in evaluate(self.eval_step, params, eval_sets, bytes_per_token).items()}]

    def global_batch(self, local: dict[str, np.ndarray]) -> dict[str, jax.Array]:
        """This process's rows -> one global array per key, split over the data x fsdp axes."""
        rows = self.cfg.batch_size // jax.process_count()
        for key in BATCH_KEYS:
            if key not in local or local[key].shape[0] != rows:
                shape = None if key not in local else local[key].shape
                raise LadderlabError(f"batch {key!r}: expected {rows} local rows, got {shape}")
        return {k: jax.make_array_from_process_local_data(self.batch_sharding, np.asarray(local[k]))
                for k in BATCH_KEYS}

    def compile(self) -> dict[str, Any]:
        """Lower and compile the train step for this mesh without allocating anything; return its cost figures.
        A compiler that finds the step too large for its devices' memory (libtpu's RESOURCE_EXHAUSTED) gives the
        memory it said it needs as `hbm_gib_per_device` and its message as `out_of_memory`."""
        seq = self.cfg.data.seq_len
        batch = {k: jax.ShapeDtypeStruct((self.cfg.batch_size, seq), np.float32 if k == "mask" else np.int32,
                                         sharding=self.batch_sharding) for k in BATCH_KEYS}
        head = {"mesh": dict(self.mesh.shape), "devices": self.mesh.size}
        try:
            with jax.set_mesh(self.mesh):
                compiled = self.step.lower(self.abstract, batch, jax.ShapeDtypeStruct((), np.float32)).compile()
        except jax.errors.JaxRuntimeError as e:
            needed = re.search(r"\((\d+(?:\.\d+)?)([KMGT])\)", str(e))
            if not str(e).startswith("RESOURCE_EXHAUSTED") or not needed:
                raise
            gib = float(needed[1]) * 1024.0 ** ("KMGT".index(needed[2]) - 2)
            return {**head, "bytes_per_device": {}, "hbm_gib_per_device": gib, "flops_per_device": None,
                    "out_of_memory": str(e).splitlines()[0], **_plan(self.cfg)}
        memory, per_device = compiled.memory_analysis(), {}
        for name in (*MEMORY, "alias") if memory is not None else ():
            size = getattr(memory, f"{name}_size_in_bytes", None)
            per_device.update({name: size, f"{name}_gib": None if size is None else size / 2**30})
        # what the step holds in device memory at once: inputs, outputs not donated into them, temps and code
        hbm = sum(per_device.get(k) or 0 for k in MEMORY) - (per_device.get("alias") or 0)
        cost = compiled.cost_analysis()
        cost = (cost[0] if isinstance(cost, list) else cost) or {}
        return {**head, "bytes_per_device": per_device, "hbm_gib_per_device": hbm / 2**30,
                "flops_per_device": float(cost.get("flops", 0.0)), **_plan(self.cfg)}


def train(cfg: TrainConfig, batches: Iterator | None = None,
          eval_sets: dict[str, list[dict]] | None = None, bytes_per_token: dict[str, float] | None = None,
          devices: list[Any] | None = None, stop_after: int | None = None) -> dict[str, Any]:
    """Train (resuming if cfg.run_dir has checkpoints) to cfg.steps; return the last train and eval metrics (a
    finished run's as logged) with "params" (counts) and "state".

    stop_after: end (with a checkpoint) after this step, as a preemption would; a later call resumes the run.
    batches: a grain DatasetIterator of this process's rows (default: `data.pipeline.train_batches`);
    eval_sets: {domain or task: [batch, ...]} (default: `data.pipeline`'s eval and task batches), bytes_per_token
    for the domains' bits per byte.
    """
    if cfg.distributed:
        jax.distributed.initialize()
    trainer = Trainer(cfg, devices)  # mesh, batch and schedule checks
    if batches is None:
        batches, eval_sets, bytes_per_token = pipeline_data(cfg)

    def init() -> dict:  # a fresh run: the seed's init, or init_from's parameters with a fresh optimizer
        return trainer.init(read_params(cfg.init_from, trainer.abstract["params"]) if cfg.init_from else None)

    state, (result,) = run_loop(trainer, checkpoints_of(cfg), batches, init, eval_sets=eval_sets,
                                bytes_per_token=bytes_per_token, stop_after=stop_after)
    return {**result, "state": state}


def checkpoints_of(cfg: TrainConfig) -> Checkpoints:
    """The checkpoint manager of cfg's run (cfg.checkpoint_dir, default run_dir/checkpoints)."""
    return Checkpoints(cfg.checkpoint_dir or as_path(cfg.run_dir) / "checkpoints", cfg.keep_last, cfg.keep_every)


def pipeline_data(cfg: TrainConfig, evals: bool = True) -> tuple[Iterator, dict[str, list[dict]] | None,
                                                                 dict[str, float] | None]:
    """The data pipeline's (train batches of this process, eval sets: every domain's and cfg.data.tasks', bytes per
    token) for cfg.data (evals=False: the batches only, with None for the rest)."""
    from ladderlab.data import pipeline

    check_vocab(cfg)
    batches = pipeline.train_batches(cfg.data, cfg.batch_size, process_index=jax.process_index(),
                                     process_count=jax.process_count())
    if not evals:
        return batches, None, None
    size = cfg.eval_batch_size
    sets = {**pipeline.eval_batches(cfg.data, size), **pipeline.task_batches(cfg.data, size)}
    return batches, sets, pipeline.eval_bytes_per_token(cfg.data)


def evaluate(eval_step: Callable, params: dict, eval_sets: dict[str, list[dict]],
             bytes_per_token: dict[str, float] | None = None) -> dict[str, Any]:
    """Per domain: mean loss (nats per token), top-1 next-token accuracy and, given bytes per token, bits per byte.
    Per task (a set whose batches carry `item`, `data.tasks.rows`): `task_scores`. eval_step(params, batch) -> per
    row (sum of CE, hits, tokens) (`step.eval_sums`); each figure is a float, or an array over the members when the
    step is a swarm's."""
    out = {}
    for name, batches in eval_sets.items():
        ce, hits, tokens = np.concatenate([np.asarray(jax.device_get(eval_step(params, {k: b[k] for k in BATCH_KEYS})),
                                                      np.float64) for b in batches], axis=-1)
        if "item" in batches[0]:
            rows = {k: np.concatenate([b[k] for b in batches]) for k in ("item", "correct", "scored_bytes")}
            out.update({f"{name}/{k}": v for k, v in task_scores(ce, **rows).items()})
            continue
        ce, hits, tokens = ce.sum(-1), hits.sum(-1), tokens.sum(-1)
        out[f"{name}/loss"] = ce / np.maximum(tokens, 1.0)
        out[f"{name}/acc"] = hits / np.maximum(tokens, 1.0)
        if bytes_per_token and name in bytes_per_token:
            out[f"{name}/bpb"] = ce / math.log(2) / np.maximum(tokens * bytes_per_token[name], 1e-9)
    return out


def task_scores(ce: np.ndarray, item: np.ndarray, correct: np.ndarray, scored_bytes: np.ndarray) -> dict[str, Any]:
    """A multiple-choice task's figures from its rows' CE sums (nats; [..., rows], a leading member axis for a
    swarm), rows item-major with the same number of choices per item (`item` -1 on padding rows): `bpb`, the true
    choices' CE summed over items / ln 2 / their UTF-8 bytes summed; `acc`, the fraction of items whose lowest CE
    per byte (OLMo normalises per character; a byte is one for ASCII) is the true choice's."""
    real = item >= 0
    n = int(real.sum())
    items = len(np.unique(item[real]))
    ce_IxC = ce[..., real].reshape(*ce.shape[:-1], items, n // items)
    bytes_IxC, truth_I = scored_bytes[real].reshape(items, -1), correct[real].reshape(items, -1).argmax(-1)
    true_I = np.take_along_axis(ce_IxC, np.broadcast_to(truth_I[:, None], (*ce.shape[:-1], items, 1)), -1)[..., 0]
    acc = ((ce_IxC / bytes_IxC).argmin(-1) == truth_I).mean(-1)
    return {"bpb": true_I.sum(-1) / math.log(2) / bytes_IxC[np.arange(items), truth_I].sum(), "acc": acc}


def check_vocab(cfg: TrainConfig) -> None:
    """The model's vocabulary must hold every id of the data's tokenizer."""
    from ladderlab.data import pipeline

    if pipeline.vocab_size(cfg.data) > cfg.model.vocab_size:
        raise LadderlabError(f"model.vocab_size={cfg.model.vocab_size} is smaller than the tokenizer's "
                             f"{pipeline.vocab_size(cfg.data)} ids ({cfg.data.tokenizer})")


def compile_report(doc: dict[str, Any]) -> str:
    """`Trainer.compile`'s figures as lines: the slice compiled for, mesh, parameters, tokens, FLOPs per token and
    per device, per-device memory in GiB, and (for a TPU topology) whether it fits the chip's HBM."""
    topo = doc.get("topology")
    lines = [f"TPU {topo['name']} ({topo['topology']}: {topo['chips']} chips on {topo['hosts']} hosts, "
             f"{topo['hbm_gib']:g} GiB HBM and {topo['peak_flops'] / 1e12:g} bf16 TFLOP/s per chip), compiled by "
             "libtpu on this host"] if topo else []
    lines += [f"mesh {' x '.join(f'{k} {v}' for k, v in doc['mesh'].items())} ({doc['devices']} devices)",
             f"parameters {doc['params']['total']:,} ({doc['params']['non_embedding']:,} non-embedding)",
             f"tokens per step {doc['tokens_per_step']:,}, FLOPs per token {doc['flops_per_token']['detailed']:.4g} "
             f"(6N {doc['flops_per_token']['6N']:.4g})"]
    memory = doc["bytes_per_device"]
    lines += [f"per device {name.replace('_', ' ')}: {memory[f'{name}_gib']:,.3f} GiB ({memory[name]:,} bytes)"
              for name in (*MEMORY, "alias") if memory.get(name) is not None]
    if doc["flops_per_device"] is not None:
        lines.append(f"FLOPs per device per step {doc['flops_per_device']:.4g} by XLA's cost analysis (a loop's "
                     "body counted once)")
    hbm = f"HBM per device {doc['hbm_gib_per_device']:,.2f} GiB (argument + output + temp + code - aliased)"
    if "out_of_memory" in doc:
        lines.append(f"the compiler: {doc['out_of_memory']}")
        hbm = f"HBM per device at least {doc['hbm_gib_per_device']:,.2f} GiB (the compiler's figure)"
    if topo:
        lines.append(f"step time at the chips' peak {doc['step_s_at_peak']:.4g} s (FLOPs per token with causal "
                     f"attention at half: {doc['flops_per_token']['causal']:.4g})")
        hbm += f": {'fits' if doc['fits'] else 'does not fit'} in the chip's {topo['hbm_gib']:g} GiB"
    return "\n".join([*lines, hbm])


def _plan(cfg: TrainConfig) -> dict[str, Any]:
    """Counts for the run's header: parameters, tokens per step and FLOPs per token."""
    tokens = cfg.batch_size * cfg.data.seq_len
    return {"params": param_counts(cfg.model), "tokens_per_step": tokens, "total_tokens": tokens * cfg.steps,
            "flops_per_token": flops_per_token(cfg.model, cfg.data.seq_len)}
