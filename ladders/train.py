"""One training run: build the mesh and sharded state, resume from the newest checkpoint, train, evaluate, save.

The loop dispatches step s+1 before it fetches step s's metrics, so the device never waits for the host to log.
Checkpoints and evals first settle the pending metrics, so a NaN/Inf loss stops the run before it is saved.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Iterator

import jax
import numpy as np

from ladderlab.config import dump_gin
from ladderlab.errors import LadderlabError
from ladderlab.ladders.checkpoint import Checkpoints
from ladderlab.ladders.config import TrainConfig
from ladderlab.ladders.metrics import RunLog
from ladderlab.ladders.state import abstract_model, abstract_state, init_state, state_shardings
from ladderlab.ladders.step import BATCH_KEYS, jit_eval_step, jit_train_step, lr_table, unit_optimizer
from ladderlab.model.counts import flops_per_token, param_counts
from ladderlab.model.sharding import batch_sharding, make_mesh


class Trainer:
    """The compiled pieces of a run for one config and mesh (shared by `train` and `compile_only`).

    `step(state, batch, lr)` takes the step's learning rate, so Trainers whose configs differ only in their
    schedule (lr, warm-up, steps) share one jitted step and its compilation.
    """

    def __init__(self, cfg: TrainConfig, devices: list[Any] | None = None):
        self.cfg = cfg
        self.mesh = make_mesh(cfg.mesh, devices)
        self.optimizer = unit_optimizer(cfg)  # AdamW at rate 1; the step scales its updates by the fed rate
        self.graphdef, abstract_params = abstract_model(cfg.model)
        self.shardings = state_shardings(abstract_params, self.optimizer, self.mesh)
        self.abstract = abstract_state(abstract_params, self.optimizer, self.shardings)
        self.batch_sharding = batch_sharding(self.mesh, cfg.batch_size)
        self.step = jit_train_step(self.graphdef, self.optimizer, cfg, self.shardings, self.batch_sharding)
        self.eval_step = jit_eval_step(self.graphdef, self.shardings["params"], self.mesh)

    def init(self) -> dict:
        return init_state(self.cfg.model, self.cfg.seed, self.optimizer, self.shardings)

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
        """Lower and compile the train step for this mesh without allocating anything; return its cost figures."""
        seq = self.cfg.data.seq_len
        batch = {k: jax.ShapeDtypeStruct((self.cfg.batch_size, seq), np.float32 if k == "mask" else np.int32,
                                         sharding=self.batch_sharding) for k in BATCH_KEYS}
        with jax.set_mesh(self.mesh):
            compiled = self.step.lower(self.abstract, batch, jax.ShapeDtypeStruct((), np.float32)).compile()
        memory = compiled.memory_analysis()
        per_device = {name: getattr(memory, f"{name}_size_in_bytes", None) for name in
                      ("argument", "output", "temp", "generated_code")} if memory is not None else {}
        return {"mesh": dict(self.mesh.shape), "devices": self.mesh.size, "bytes_per_device": per_device,
                **_plan(self.cfg)}


def train(cfg: TrainConfig, batches: Iterator | None = None,
          eval_sets: dict[str, list[dict]] | None = None, bytes_per_token: dict[str, float] | None = None,
          devices: list[Any] | None = None, stop_after: int | None = None) -> dict[str, Any]:
    """Train (resuming if cfg.run_dir has checkpoints) to cfg.steps; return the last train and eval metrics.

    stop_after: end (with a checkpoint) after this step, as a preemption would; a later call resumes the run.
    batches: a grain DatasetIterator of this process's rows (default: `data.pipeline.train_batches`);
    eval_sets: {domain: [batch, ...]} (default: `data.pipeline.eval_batches`), bytes_per_token for bits per byte.
    """
    if cfg.distributed:
        jax.distributed.initialize()
    trainer = Trainer(cfg, devices)
    if batches is None:
        from ladderlab.data import pipeline

        if pipeline.vocab_size(cfg.data) > cfg.model.vocab_size:
            raise LadderlabError(f"model.vocab_size={cfg.model.vocab_size} is smaller than the tokenizer's "
                                 f"{pipeline.vocab_size(cfg.data)} ids ({cfg.data.tokenizer})")

        batches = pipeline.train_batches(cfg.data, cfg.batch_size, process_index=jax.process_index(),
                                         process_count=jax.process_count())
        eval_sets = pipeline.eval_batches(cfg.data, cfg.eval_batch_size)
        bytes_per_token = pipeline.eval_bytes_per_token(cfg.data)
    run_dir = Path(cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    checkpoints = Checkpoints(cfg.checkpoint_dir or run_dir / "checkpoints", cfg.keep_last, cfg.keep_every)
    log, result = None, {"params": param_counts(cfg.model)}
    try:
        _check_same_model(run_dir / "config.gin", cfg, checkpoints)
        if jax.process_index() == 0:
            (run_dir / "config.gin").write_text(dump_gin(cfg))
        restored = checkpoints.restore(trainer.abstract, batches)
        state, start = restored if restored else (trainer.init(), 0)
        log = RunLog(run_dir, start, cfg.steps, cfg.progress)
        pending = None

        def settle() -> None:  # fetch the last dispatched step's metrics (the host's only wait)
            nonlocal pending
            if pending is not None:
                step, metrics = pending
                pending = None
                result["train"] = log.train(step, _finite(jax.device_get(metrics), step, checkpoints))

        end, lrs = min(cfg.steps, stop_after or cfg.steps), lr_table(cfg)
        with jax.set_mesh(trainer.mesh):
            for step in range(start + 1, end + 1):
                state, metrics = trainer.step(state, trainer.global_batch(next(batches)), lrs[step - 1])
                last = step == end
                if pending is not None and (pending[0] % cfg.log_every == 0 or last):
                    settle()
                pending = (step, metrics)
                eval_due = bool(eval_sets) and (last or _every(step, cfg.eval_every))
                save_due = last or _every(step, cfg.checkpoint_every)
                if eval_due or save_due:
                    settle()  # a NaN stops the run here, before it is evaluated or saved
                if eval_due:
                    result["eval"] = evaluate(trainer.eval_step, state["params"], eval_sets, bytes_per_token)
                    log.eval(step, result["eval"])
                if save_due:
                    checkpoints.save(step, state, batches)
        result["state"] = state
        return result
    finally:
        checkpoints.close()
        if log is not None:
            log.close()


def evaluate(eval_step: Callable, params: dict, eval_sets: dict[str, list[dict]],
             bytes_per_token: dict[str, float] | None = None) -> dict[str, Any]:
    """Per domain: mean loss (nats per token), top-1 next-token accuracy and, given bytes per token, bits per byte.
    eval_step(params, batch) -> (sum of CE, hits, tokens) (`step.eval_sums`); each figure is a float, or an array
    over the members when the step is a swarm's."""
    out = {}
    for domain, batches in eval_sets.items():
        ce, hits, tokens = sum(np.asarray(jax.device_get(eval_step(params, {k: b[k] for k in BATCH_KEYS})), np.float64)
                               for b in batches)
        out[f"{domain}/loss"] = ce / np.maximum(tokens, 1.0)
        out[f"{domain}/acc"] = hits / np.maximum(tokens, 1.0)
        if bytes_per_token and domain in bytes_per_token:
            out[f"{domain}/bpb"] = ce / math.log(2) / np.maximum(tokens * bytes_per_token[domain], 1e-9)
    return out


def _check_same_model(saved: Path, cfg: TrainConfig, checkpoints: Checkpoints) -> None:
    """Refuse to resume checkpoints of a model of other shapes (rather than taking them for damaged ones)."""
    if checkpoints.latest() is None or not saved.is_file():
        return

    def shape_lines(text: str) -> set[str]:
        return {line for line in text.splitlines() if line.startswith("model/")
                and not line.split("=")[0].strip().endswith(("compute_dtype", "remat"))}

    changed = sorted(shape_lines(dump_gin(cfg)) - shape_lines(saved.read_text()))
    if changed:
        raise LadderlabError(f"{saved.parent}: has checkpoints of another model ({changed[0].strip()} differs); "
                             f"use a new run_dir")


def _every(step: int, period: int) -> bool:
    return period > 0 and step % period == 0


def _finite(metrics: dict[str, Any], step: int, checkpoints: Checkpoints) -> dict[str, float]:
    metrics = {k: float(v) for k, v in metrics.items()}
    bad = [k for k in ("loss", "grad_norm") if not math.isfinite(metrics[k])]
    if bad:
        last = checkpoints.latest()
        where = f"step {last} in {checkpoints.directory}" if last is not None else "none saved"
        raise LadderlabError(f"step {step}: {bad[0]} is {metrics[bad[0]]}; stopping (last good checkpoint: {where})")
    return metrics


def _plan(cfg: TrainConfig) -> dict[str, Any]:
    """Counts for the run's header: parameters, tokens per step and FLOPs per token."""
    tokens = cfg.batch_size * cfg.data.seq_len
    return {"params": param_counts(cfg.model), "tokens_per_step": tokens, "total_tokens": tokens * cfg.steps,
            "flops_per_token": flops_per_token(cfg.model, cfg.data.seq_len)}
