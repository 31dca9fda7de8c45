"""Growth runs: train a small model for d tokens (the trainer, in its own run folder), grow it with one operator,
keep training the grown model on the same data stream (`GrowConfig` says how; `grow_compare` compares operators).

The small model follows the first d tokens of the learning-rate schedule of the whole run (both phases, as the
scratch run trains), so it is not annealed at growth, as in the paper's code (its base is checkpointed early in a
long cosine). After growth the rate follows `GrowConfig.post_growth` (`post_growth_rates`): "continue" (the whole
run's schedule goes on, no re-warm), "rewarm" (a new warm-up to rewarm_fraction x the peak, then the same decay to
the same floor) or "fresh" (a new warm-up to the full peak and a decay over the grown phase). "fresh" is the
default: it is what the paper's code does (prts run_pretrain.py: the grown model's iteration count restarts at 0,
so it warms up again for warmup_steps to the target's own peak and decays over its own max_step).

The grown phase is a run of the one loop (`run.loop.run_loop`) that starts from the grown parameters (and, with
opt_state='grow', grown Adam moments) and computes with G_random's masked parameters (a per-step transform), so it
checkpoints, resumes, shards over cfg.train's mesh and accumulates gradients like any run. Each grown run writes
`result.json` with its curve: tokens and FLOPs (6N per token, both phases and G_learn's map training counted) and
the mean eval loss over the compared domains (`compared_domains`) at each eval point; step 0 is the moment of
growth (its loss is inherited, not trained: speed-ups ignore it).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Literal

import jax
import jax.numpy as jnp
import numpy as np

from ladderlab.errors import LadderlabError
from ladderlab.ladders.run.config import TrainConfig
from ladderlab.ladders.store import read_metrics
from ladderlab.ladders.run.loop import run_loop
from ladderlab.ladders.run.schedule import make_schedule
from ladderlab.ladders.run.state import abstract_model
from ladderlab.ladders.run.step import BATCH_KEYS, token_sums
from ladderlab.ladders.run.train import Trainer, checkpoints_of, pipeline_data, train
from ladderlab.model.counts import param_counts
from ladderlab.model.growth.operators import (LearnSetup, grow, grow_moments, growth_factor, mask_ramp, masked,
                                              parse_operator, small_model)
from ladderlab.paths import AnyPath, as_path, write_atomic

ALL_RUNS = ("scratch", "direct:depth", "learn:depth", "zero:depth", "random:depth",
            "direct:width", "learn:width", "zero:width", "random:width")
POST_GROWTH = ("continue", "rewarm", "fresh")


@dataclass(frozen=True)
class GrowConfig:
    """`train` is the target model's run after growth (its `steps` count the grown model's steps); the small model
    trains with the same batch and data stream for `growth_steps` (d = growth_steps x batch x seq_len tokens) on
    the first growth_steps steps of the whole run's schedule (growth_steps + steps). The scratch run trains the
    target for growth_steps + steps on the same stream: the same tokens in the same order as every grown run."""

    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    # "scratch" and "<operator>:<depth|width>", optionally "@<post_growth>" ("direct:depth@continue") to compare
    # schedules after growth on the same small model
    runs: tuple[str, ...] = ALL_RUNS
    growth_factor: int = 4  # g: n_layers / g layers (depth) or every width / sqrt(g) (width)
    growth_steps: int = 50
    order: Literal["stack", "interpolate"] = "stack"  # G_stack's layer order
    opt_state: Literal["fresh", "grow"] = "fresh"  # the grown model's optimizer state
    learn_steps: int = 20  # G_learn: Adam steps fitting the growth maps (their FLOPs are counted)
    learn_lr: float = 1e-3
    mask_steps: int = 20  # G_random: steps over which the masks ramp 0 -> 1
    seed: int = 0  # new weights of the operators (direct-width copy choice, random/zero new entries, learn maps)
    # the learning rate after growth (module docstring); "fresh" is the paper's code
    post_growth: Literal["continue", "rewarm", "fresh"] = "fresh"
    rewarm_fraction: float = 0.5  # "rewarm": the re-warmed peak as a fraction of train.lr
    # grow_compare: one comparison per seed, in <out>/seed<s>/; seed s sets train.seed (init), train.data.seed
    # (data order: the same for scratch and grown within a seed) and `seed`
    seeds: tuple[int, ...] = (0,)
    # the loss compared: mean over the domains trained on (mixture weight > 0) or over every eval domain
    compare_on: Literal["trained", "all"] = "trained"


# () -> (train batches iterator, eval sets {domain: [batch]}, bytes per token or None); a fresh stream per call
DataFn = Callable[[], tuple[Iterator, dict[str, list[dict]], dict[str, float] | None]]


def parse_run(name: str) -> tuple[str, str, str | None]:
    """'direct:depth@continue' -> ('direct', 'depth', 'continue'); 'direct:depth' -> ('direct', 'depth', None) (the
    config's post_growth); 'scratch' -> ('scratch', '', None)."""
    if name == "scratch":
        return name, "", None
    grown, _, schedule = name.partition("@")
    if "@" in name and schedule not in POST_GROWTH:
        raise LadderlabError(f"runs: {name!r}: the schedule after '@' must be one of {', '.join(POST_GROWTH)}")
    return (*parse_operator(grown, "runs"), schedule or None)


def run_folder(name: str) -> str:
    """A run's folder in the comparison: 'direct:depth@continue' -> 'direct-depth-continue'."""
    return name.replace(":", "-").replace("@", "-")


def post_growth_rates(cfg: GrowConfig, post_growth: str | None = None) -> np.ndarray:
    """The learning rate fed to each grown-phase step 1..train.steps (float32) under post_growth (default
    cfg.post_growth): the tail of the whole run's schedule ("continue"), or a new warm-up and decay over the grown
    phase to rewarm_fraction x lr ("rewarm") or to lr ("fresh"), ending at the whole run's floor."""
    t, kind = cfg.train, post_growth or cfg.post_growth
    if kind not in POST_GROWTH:
        raise LadderlabError(f"post_growth={kind!r}: expected one of {', '.join(POST_GROWTH)}")
    if kind == "continue":
        total = cfg.growth_steps + t.steps
        rates = make_schedule(t.schedule, t.lr, total, min(t.warmup_steps, total), floor_ratio=t.min_lr_ratio,
                              decay_fraction=t.decay_fraction)(jnp.arange(cfg.growth_steps, total))
        return np.asarray(rates, np.float32)
    peak = cfg.rewarm_fraction if kind == "rewarm" else 1.0
    if not t.min_lr_ratio <= peak <= 1.0:
        raise LadderlabError(f"rewarm_fraction={cfg.rewarm_fraction}: must lie between train.min_lr_ratio="
                             f"{t.min_lr_ratio} (the floor) and 1 (the peak)")
    rates = make_schedule(t.schedule, peak * t.lr, t.steps, t.warmup_steps, floor_ratio=t.min_lr_ratio / peak,
                          decay_fraction=t.decay_fraction)(jnp.arange(t.steps))
    return np.asarray(rates, np.float32)


def compared_domains(cfg: TrainConfig, domains) -> list[str]:
    """The eval domains whose mean loss is compared: those cfg.data's mixture trains on (weight > 0; every domain
    when the mixture is empty)."""
    mixture = cfg.data.mixture
    picked = [d for d in domains if not mixture or mixture.get(d, 0) > 0]
    if not picked:
        raise LadderlabError(f"compare_on='trained': no eval domain ({', '.join(domains)}) is in the mixture "
                             f"{mixture}")
    return picked


def tokens_per_step(cfg: TrainConfig) -> int:
    return cfg.batch_size * cfg.data.seq_len


def six_n(model) -> float:
    return 6.0 * param_counts(model)["non_embedding"]


def small_train_config(cfg: GrowConfig, dim: str, out: AnyPath) -> TrainConfig:
    """The small model's run: the target's run with the small model and its own folder (and W&B run, named
    <out's name>/small-<dim>), on the whole run's schedule (growth_steps + steps), stopped after growth_steps
    (`grown_run`)."""
    t = cfg.train
    total = cfg.growth_steps + t.steps
    return dataclasses.replace(t, model=small_model(t.model, cfg.growth_factor, dim), steps=total,
                               warmup_steps=min(t.warmup_steps, total), run_dir=str(out / f"small-{dim}"),
                               wandb_name=f"{out.name}/small-{dim}", checkpoint_dir="", eval_every=0, keep_last=1,
                               keep_every=0)


def grown_run(cfg: GrowConfig, operator: str, dim: str, out: str | AnyPath, data: DataFn | None = None,
              devices: list[Any] | None = None, stop_after: int | None = None,
              post_growth: str | None = None) -> dict[str, Any]:
    """One growth variant of a run: the small model for d tokens, grow, cfg.train.steps more through the one loop
    (checkpoints, resume, cfg.train's mesh and grad_accum; G_random's mask ramp as its parameter transform) with
    the rates of `post_growth` (default cfg.post_growth; given, it names the run '<operator>:<dim>@<post_growth>').
    Returns (and writes to out/<folder>/result.json) {run, operator, dim, g (the depth or width factor),
    param_ratio, d, N, n_small, post_growth, domains, curve: [{step, D, flops, loss}]}; stop_after: end the grown
    phase (with a checkpoint) after this step, as a preemption would (returning {})."""
    out = as_path(out)
    name = f"{operator}:{dim}" + (f"@{post_growth}" if post_growth else "")
    rates = post_growth_rates(cfg, post_growth)
    run_dir = out / run_folder(name)
    if (run_dir / "result.json").is_file():
        return json.loads((run_dir / "result.json").read_text())
    big = dataclasses.replace(cfg.train, run_dir=str(run_dir), checkpoint_dir="",
                              wandb_name=f"{out.name}/{run_dir.name}")
    if operator == "learn" and cfg.opt_state == "grow":
        raise LadderlabError("opt_state='grow' with operator 'learn': G_learn's maps cannot grow Adam's moments; "
                             "use opt_state='fresh'")
    small = small_train_config(cfg, dim, out)
    data = data or (lambda: pipeline_data(big))
    batches, eval_sets, bytes_per_token = data()
    # Trains the small model, or (when its folder holds the final checkpoint) restores it and rewinds `batches`;
    # a resumed grown phase grows again (deterministic) for its transform, then restores its own checkpoint.
    state = jax.device_get(train(small, batches, eval_sets, bytes_per_token, devices=devices,
                                 stop_after=cfg.growth_steps)["state"])
    # G_learn fits its maps on a second copy of the stream (batches the small model saw), so that the grown phase
    # reads the batches the scratch run reads at the same tokens
    learn = LearnSetup(_mean_loss(big), _device_batches(data()[0] if operator == "learn" else batches),
                       cfg.learn_steps, cfg.learn_lr)
    grown = grow(state["params"], small.model, big.model, operator, order=cfg.order, seed=cfg.seed, learn=learn)
    masks, ramp = jax.device_get(grown.masks), cfg.mask_steps if operator == "random" else 0
    trainer = Trainer(big, devices, None if masks is None else lambda p, step: masked(p, masks, mask_ramp(step, ramp)),
                      lrs=rates)
    opt = None
    if cfg.opt_state == "grow":
        opt = _grow_opt_state(trainer.optimizer.init(grown.params), state["opt"],
                              lambda t: grow_moments(t, small.model, big.model, operator, order=cfg.order,
                                                     seed=cfg.seed))
    end, _ = run_loop(trainer, checkpoints_of(big), batches, lambda: trainer.init(grown.params, opt),
                      eval_sets=eval_sets, bytes_per_token=bytes_per_token, stop_after=stop_after, eval_first=True)
    if int(end["step"]) < big.steps:
        return {}  # stopped by stop_after: no result yet
    _, evals = read_metrics(run_dir / "metrics.jsonl")
    per_step = tokens_per_step(big)
    d = cfg.growth_steps * per_step
    spent = six_n(small.model) * d + (six_n(big.model) * cfg.learn_steps * per_step if operator == "learn" else 0.0)
    domains = loss_domains(cfg, evals)
    curve = [{"step": s, "D": d + s * per_step, "flops": spent + six_n(big.model) * s * per_step,
              "loss": mean_eval(evals[s], domains)} for s in sorted(evals)]
    doc = {"run": name, "operator": operator, "dim": dim, "g": cfg.growth_factor,
           "param_ratio": growth_factor(small.model, big.model), "d": d,
           "N": param_counts(big.model)["non_embedding"], "n_small": param_counts(small.model)["non_embedding"],
           "order": cfg.order if (operator, dim) == ("direct", "depth") else "", "opt_state": cfg.opt_state,
           "post_growth": post_growth or cfg.post_growth,
           "rewarm_fraction": cfg.rewarm_fraction if (post_growth or cfg.post_growth) == "rewarm" else None,
           "domains": domains, "curve": curve}
    write_atomic(run_dir / "result.json", json.dumps(doc))
    return doc


def loss_domains(cfg: GrowConfig, evals: dict[int, dict[str, float]]) -> list[str]:
    """The domains of the compared loss (cfg.compare_on) among those a run's evals logged."""
    logged = sorted({k[:-len("/loss")] for row in evals.values() for k in row if k.endswith("/loss")})
    return logged if cfg.compare_on == "all" else compared_domains(cfg.train, logged)


def mean_eval(row: dict[str, float], domains: list[str]) -> float:
    """The mean eval loss of `domains` in one logged eval row."""
    return float(np.mean([row[f"{d}/loss"] for d in domains]))


def _mean_loss(cfg: TrainConfig) -> Callable[[dict, dict], jax.Array]:
    """params, batch -> mean cross-entropy per real token of the model cfg.model (G_learn's objective)."""
    graphdef, _ = abstract_model(cfg.model)

    def loss(params, batch):
        _, (ce, _, tokens) = token_sums(graphdef, params, batch)
        return ce / jnp.maximum(tokens, 1.0)
    return loss


def _device_batches(batches: Iterator) -> Iterator[dict]:
    while True:
        batch = next(batches)
        yield {k: jnp.asarray(batch[k]) for k in BATCH_KEYS}


def _grow_opt_state(fresh: Any, small: Any, grow_tree: Callable[[dict], dict]) -> Any:
    """The grown model's optimizer state: Adam's moments grown like the weights and its step count kept;
    everything else (schedule counters) fresh, so the grown model's schedule starts at step 0."""
    if hasattr(fresh, "_fields") and {"mu", "nu", "count"} <= set(fresh._fields):
        return fresh._replace(mu=grow_tree(small.mu), nu=grow_tree(small.nu), count=jnp.asarray(small.count))
    if isinstance(fresh, tuple):
        parts = [_grow_opt_state(f, s, grow_tree) for f, s in zip(fresh, small)]
        return type(fresh)(*parts) if hasattr(fresh, "_fields") else tuple(parts)
    return fresh
