"""The one training loop that lone, swarm, grown and CPT runs drive: resume or start, train, log, eval, save.

Every check of the configs runs before anything is written. A run resumes only with its saved config.gin's values
(`check_resume`; `allow_schedule_change` lets steps, lr and the schedule change) and says where it resumed; a
finished run says so and returns its logged metrics. The loop dispatches step s+1 before it fetches step s's
metrics, so the device never waits for the host to log. Checkpoints and evals first settle the pending metrics, so
a NaN/Inf loss stops the run before it is saved.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Protocol

import jax

from ladderlab.config import dump_gin
from ladderlab.errors import LadderlabError
from ladderlab.ladders.run.checkpoint import Checkpoints
from ladderlab.ladders.run.config import SCHEDULE, TrainConfig, resume_changes
from ladderlab.ladders.run.metrics import RunLog, last_rows
from ladderlab.ladders.run.tracking import check as check_tracking
from ladderlab.model.counts import param_counts
from ladderlab.paths import AnyPath, as_path


class Steps(Protocol):
    """What the loop drives: the compiled pieces of one run (`train.Trainer`) or of a swarm (`variants.swarm.Swarm`)."""

    cfgs: list[TrainConfig]  # one per member (a lone run is one member)
    mesh: Any
    abstract: dict  # the state's ShapeDtypeStructs with shardings (the restore target)

    def step(self, state: dict, batch: dict, lr: Any) -> tuple[dict, dict]: ...
    def lr(self, step: int) -> Any: ...  # the step's learning-rate input (step counts from 1)
    def global_batch(self, local: Any) -> dict: ...
    def rows(self, metrics: dict) -> list[dict[str, float]]: ...  # fetched metrics -> one row per member
    def evaluate(self, state: dict, eval_sets: dict, bytes_per_token: dict | None) -> list[dict[str, float]]: ...


def run_loop(steps: Steps, checkpoints: Checkpoints, data: Any, init: Callable[[], dict], *,
             eval_sets: dict[str, list[dict]] | None = None, bytes_per_token: dict[str, float] | None = None,
             stop_after: int | None = None, swarm_dir: str | None = None, eval_first: bool = False,
             claim: Callable[[], None] | None = None) -> tuple[dict, list[dict[str, Any]]]:
    """Train steps.cfgs (resuming from `checkpoints`, else from `init()`) to their shared steps; return the last
    state and, per member, {"params" (counts), "train", "eval"} (a finished run's as logged).

    data: the batches' iterator (its position is checkpointed); stop_after: end (with a checkpoint) after this
    step, as a preemption would; swarm_dir: the members train as one swarm saved there (said in messages);
    eval_first: a fresh start also evaluates (and logs) the initial state as step 0; claim: called after the
    checks, before anything is written.
    """
    cfgs, cfg = steps.cfgs, steps.cfgs[0]
    logs: list[RunLog] = []
    results: list[dict[str, Any]] = [{"params": param_counts(cfg.model)} for _ in cfgs]
    try:  # nothing is written before `write_config`: every error up to it leaves the run folders as they were
        changed = [check_resume(as_path(c.run_dir), c, checkpoints.latest()) for c in cfgs]
        for c in cfgs:
            check_tracking(c)
        if claim is not None:
            claim()
        restored = checkpoints.restore(steps.abstract, data)
        state, start = restored if restored else (init(), 0)
        for c, change in zip(cfgs, changed):
            write_config(as_path(c.run_dir), c, start if change else 0)
        if start == cfg.steps:
            for c, result in zip(cfgs, results):
                result.update(finished(as_path(c.run_dir), start))
            return state, results
        if start:
            change = "; ".join(dict.fromkeys(filter(None, changed)))
            where = f"swarm {swarm_dir}: resuming {len(cfgs)} members" if swarm_dir else \
                f"run_dir {cfg.run_dir}: resuming"
            say(f"{where} from step {start} (checkpoint {checkpoints.directory / str(start)})"
                + (f" with a changed schedule: {change}" if change else ""))
        logs = [RunLog(c.run_dir, start, cfg.steps, cfg.batch_size * cfg.data.seq_len, c.progress and i == 0, c)
                for i, c in enumerate(cfgs)]
        who = [f"swarm member {c.run_dir}: " if swarm_dir else "" for c in cfgs]

        def evaluate(step: int) -> None:
            for log, result, row in zip(logs, results, steps.evaluate(state, eval_sets, bytes_per_token)):
                result["eval"] = row
                log.eval(step, row)

        pending = None

        def settle() -> None:  # fetch the last dispatched step's metrics (the host's only wait)
            nonlocal pending
            if pending is not None:
                step, metrics = pending
                pending = None
                for i, row in enumerate(steps.rows(jax.device_get(metrics))):
                    results[i]["train"] = logs[i].train(step, _finite(row, step, checkpoints, who[i]))

        end = min(cfg.steps, stop_after or cfg.steps)
        with jax.set_mesh(steps.mesh):
            if eval_first and eval_sets and start == 0:
                evaluate(0)
            for step in range(start + 1, end + 1):
                state, metrics = steps.step(state, steps.global_batch(next(data)), steps.lr(step))
                last = step == end
                if pending is not None and (pending[0] % cfg.log_every == 0 or last):
                    settle()
                pending = (step, metrics)
                eval_due = bool(eval_sets) and (last or _every(step, cfg.eval_every))
                save_due = last or _every(step, cfg.checkpoint_every)
                if eval_due or save_due:
                    settle()  # a NaN stops the run here, before it is evaluated or saved
                if eval_due:
                    evaluate(step)
                if save_due:
                    for log in logs:  # logs staged for an object store go up first: no checkpoint outruns them
                        log.sync()
                    checkpoints.save(step, state, data)
        return state, results
    finally:
        checkpoints.close()
        for log in logs:
            log.close()


def check_resume(run_dir: AnyPath, cfg: TrainConfig, latest: int | None) -> str:
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


def write_config(run_dir: AnyPath, cfg: TrainConfig, changed_at: int = 0) -> None:
    """Save cfg as run_dir/config.gin (process 0); a schedule changed on resuming from step `changed_at` keeps the
    config that trained the steps before as config.step<changed_at>.gin."""
    if jax.process_index() == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        if changed_at:
            (run_dir / "config.gin").replace(run_dir / f"config.step{changed_at}.gin")
        (run_dir / "config.gin").write_text(dump_gin(cfg))


def finished(run_dir: AnyPath, steps: int) -> dict[str, dict[str, float]]:
    """Say (process 0) that the run in run_dir has finished; return its last logged train and eval metrics."""
    rows = last_rows(run_dir)
    loss = f"loss {rows['train']['loss']:.4f}" if "train" in rows else "no train loss logged"
    say(f"run_dir {run_dir}: already finished at step {steps} ({loss}); nothing to do")
    return rows


def say(line: str) -> None:
    """One line for the person running the job (process 0 only)."""
    if jax.process_index() == 0:
        print(line, flush=True)


def _every(step: int, period: int) -> bool:
    return period > 0 and step % period == 0


def _finite(metrics: dict[str, float], step: int, checkpoints: Checkpoints, who: str) -> dict[str, float]:
    bad = [k for k in ("loss", "grad_norm") if not math.isfinite(metrics[k])]
    if bad:
        last = checkpoints.latest()
        where = f"step {last} in {checkpoints.directory}" if last is not None else "none saved"
        raise LadderlabError(f"{who}step {step}: {bad[0]} is {metrics[bad[0]]}; stopping (last good checkpoint: "
                             f"{where})")
    return metrics
