"""One training run: build the mesh and sharded state, resume from the newest checkpoint, train, evaluate, save.

Every check of the config runs before anything is written. A run resumes only with its saved config.gin's values
(`check_resume`; `allow_schedule_change` lets steps, lr and the schedule change) and says where it resumed; a
finished run says so and returns its logged metrics. The loop dispatches step s+1 before it fetches step s's
metrics, so the device never waits for the host to log. Checkpoints and evals first settle the pending metrics, so
a NaN/Inf loss stops the run before it is saved.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np

from ladderlab.config import dump_gin
from ladderlab.errors import LadderlabError
from ladderlab.ladders.checkpoint import Checkpoints, read_params
from ladderlab.ladders.config import SCHEDULE, TrainConfig, resume_changes
from ladderlab.ladders.metrics import RunLog, last_rows
from ladderlab.ladders.state import abstract_model, abstract_state, init_state, state_shardings
from ladderlab.ladders.step import BATCH_KEYS, jit_eval_step, jit_train_step, lr_table, unit_optimizer
from ladderlab.model.counts import flops_per_token, param_counts
from ladderlab.model.sharding import batch_sharding, make_mesh


MEMORY = ("argument", "output", "temp", "generated_code")  # per-device sizes the compiled step reports


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

    def init(self, params: dict | None = None) -> dict:
        """A state at step 0: the seed's initialisation, or `params` (sharded as the state's) with a new optimizer."""
        if params is None:
            return init_state(self.cfg.model, self.cfg.seed, self.optimizer, self.shardings)
        return {"params": params, "opt": jax.jit(self.optimizer.init, out_shardings=self.shardings["opt"])(params),
                "step": jax.device_put(jnp.zeros((), jnp.int32), self.shardings["step"])}

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
        memory, per_device = compiled.memory_analysis(), {}
        for name in MEMORY if memory is not None else ():
            size = getattr(memory, f"{name}_size_in_bytes", None)
            per_device.update({name: size, f"{name}_gib": None if size is None else size / 2**30})
        return {"mesh": dict(self.mesh.shape), "devices": self.mesh.size, "bytes_per_device": per_device,
                **_plan(self.cfg)}


def train(cfg: TrainConfig, batches: Iterator | None = None,
          eval_sets: dict[str, list[dict]] | None = None, bytes_per_token: dict[str, float] | None = None,
          devices: list[Any] | None = None, stop_after: int | None = None) -> dict[str, Any]:
    """Train (resuming if cfg.run_dir has checkpoints) to cfg.steps; return the last train and eval metrics (a
    finished run's as logged) with "params" (counts) and "state".

    stop_after: end (with a checkpoint) after this step, as a preemption would; a later call resumes the run.
    batches: a grain DatasetIterator of this process's rows (default: `data.pipeline.train_batches`);
    eval_sets: {domain: [batch, ...]} (default: `data.pipeline.eval_batches`), bytes_per_token for bits per byte.
    """
    if cfg.distributed:
        jax.distributed.initialize()
    trainer, lrs = Trainer(cfg, devices), lr_table(cfg)  # mesh, batch and schedule checks
    if batches is None:
        from ladderlab.data import pipeline

        check_vocab(cfg)
        batches = pipeline.train_batches(cfg.data, cfg.batch_size, process_index=jax.process_index(),
                                         process_count=jax.process_count())
        eval_sets = pipeline.eval_batches(cfg.data, cfg.eval_batch_size)
        bytes_per_token = pipeline.eval_bytes_per_token(cfg.data)
    run_dir = Path(cfg.run_dir)
    checkpoints = Checkpoints(cfg.checkpoint_dir or run_dir / "checkpoints", cfg.keep_last, cfg.keep_every)
    log, result = None, {"params": param_counts(cfg.model)}
    try:  # nothing is written before `write_config`: every error up to it leaves the run folder as it was
        changed = check_resume(run_dir, cfg, checkpoints.latest())
        restored = checkpoints.restore(trainer.abstract, batches)
        state, start = restored if restored else (
            trainer.init(read_params(cfg.init_from, trainer.abstract["params"]) if cfg.init_from else None), 0)
        write_config(run_dir, cfg, start if changed else 0)
        if start == cfg.steps:
            return {**result, **finished(run_dir, start), "state": state}
        if start:
            say(f"run_dir {run_dir}: resuming from step {start} (checkpoint {checkpoints.directory / str(start)})"
                + (f" with a changed schedule: {changed}" if changed else ""))
        log = RunLog(run_dir, start, cfg.steps, cfg.batch_size * cfg.data.seq_len, cfg.progress)
        pending = None

        def settle() -> None:  # fetch the last dispatched step's metrics (the host's only wait)
            nonlocal pending
            if pending is not None:
                step, metrics = pending
                pending = None
                result["train"] = log.train(step, _finite(jax.device_get(metrics), step, checkpoints))

        end = min(cfg.steps, stop_after or cfg.steps)
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


def check_vocab(cfg: TrainConfig) -> None:
    """The model's vocabulary must hold every id of the data's tokenizer."""
    from ladderlab.data import pipeline

    if pipeline.vocab_size(cfg.data) > cfg.model.vocab_size:
        raise LadderlabError(f"model.vocab_size={cfg.model.vocab_size} is smaller than the tokenizer's "
                             f"{pipeline.vocab_size(cfg.data)} ids ({cfg.data.tokenizer})")


def check_resume(run_dir: Path, cfg: TrainConfig, latest: int | None) -> str:
    """Before resuming from checkpoint step `latest` (None: nothing to resume), refuse a config that differs from
    the run's saved config.gin (`config.resume_changes`), unless only SCHEDULE's fields differ and
    cfg.allow_schedule_change; return the accepted changes as "steps 30 -> 60, ..." ("" if none)."""
    saved = run_dir / "config.gin"
    if latest is None:
        return ""
    changes = resume_changes(saved.read_text(), cfg) if saved.is_file() else {}
    said = ", ".join(f"{k} {old} -> {new}" for k, (old, new) in changes.items())
    if any(k not in SCHEDULE for k in changes):
        raise LadderlabError(f"run_dir {run_dir}: its checkpoints were trained with other values ({said}; see "
                             f"{saved}); restore them or use a new run_dir")
    if changes and not cfg.allow_schedule_change:
        raise LadderlabError(f"run_dir {run_dir}: resuming with a changed schedule ({said}; see {saved}); pass "
                             f"--allow-schedule-change (allow_schedule_change=True) to continue on it, or use a new "
                             f"run_dir")
    if latest > cfg.steps:
        raise LadderlabError(f"run_dir {run_dir}: has a checkpoint at step {latest}, past steps={cfg.steps}; "
                             f"use a new run_dir")
    return said


def write_config(run_dir: Path, cfg: TrainConfig, changed_at: int = 0) -> None:
    """Save cfg as run_dir/config.gin (process 0); a schedule changed on resuming from step `changed_at` keeps the
    config that trained the steps before as config.step<changed_at>.gin."""
    if jax.process_index() == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        if changed_at:
            (run_dir / "config.gin").replace(run_dir / f"config.step{changed_at}.gin")
        (run_dir / "config.gin").write_text(dump_gin(cfg))


def finished(run_dir: Path, steps: int) -> dict[str, dict[str, float]]:
    """Say (process 0) that the run in run_dir has finished; return its last logged train and eval metrics."""
    rows = last_rows(run_dir)
    loss = f"loss {rows['train']['loss']:.4f}" if "train" in rows else "no train loss logged"
    say(f"run_dir {run_dir}: already finished at step {steps} ({loss}); nothing to do")
    return rows


def say(line: str) -> None:
    """One line for the person running the job (process 0 only)."""
    if jax.process_index() == 0:
        print(line, flush=True)


def compile_report(doc: dict[str, Any]) -> str:
    """`Trainer.compile`'s figures as lines: mesh, parameters, per-device memory in GiB, tokens, FLOPs per token."""
    lines = [f"mesh {' x '.join(f'{k} {v}' for k, v in doc['mesh'].items())} ({doc['devices']} devices)",
             f"parameters {doc['params']['total']:,} ({doc['params']['non_embedding']:,} non-embedding)",
             f"tokens per step {doc['tokens_per_step']:,}, FLOPs per token {doc['flops_per_token']['detailed']:.4g} "
             f"(6N {doc['flops_per_token']['6N']:.4g})"]
    memory = doc["bytes_per_device"]
    lines += [f"per device {name.replace('_', ' ')}: {memory[f'{name}_gib']:,.3f} GiB ({memory[name]:,} bytes)"
              for name in MEMORY if memory.get(name) is not None]
    return "\n".join(lines)


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
