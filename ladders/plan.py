"""A ladder's run list: each run's model, tokens, steps, batch, LR and warm-up from the rules of N, and its
TrainConfig; then each run's growth variants and continual-pre-training phases; with `branches`, which runs are
decay branches of which (`branched`). Pure arithmetic (no JAX is run), so `ladderlab ladder plan` is instant.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence, get_args, get_type_hints

from ladderlab.data import tasks
from ladderlab.errors import LadderlabError
from ladderlab.ladders.run.config import TrainConfig
from ladderlab.ladders.config import LadderConfig
from ladderlab.model.config import ModelConfig, check_model
from ladderlab.model.counts import flops_per_token, param_counts, size_for
from ladderlab.paths import as_path

@dataclass(frozen=True)
class PlannedRun:
    """One run of the ladder. `tokens` is what the run really trains on (a grown variant: both phases; a CPT phase:
    the phase only); `steps` are its last phase's. `tokens_before` / `flops_before` come before that phase (the
    small model's, or the base run's), so the runs table's D and FLOPs count everything the model has seen.
    A decay branch is the whole WSD run of `steps` (its table rows count from step 0), but it trains only the steps
    after `branch_step`, where it leaves run `branch_of`: its `flops` and `est_s` count those (the compute it adds)."""

    run: str
    size: str
    multiple: float
    mixture: str
    weights: dict[str, float]
    seed: int
    model: ModelConfig
    n: int  # non-embedding parameters (untied head included)
    steps: int
    batch_size: int
    lr: float
    warmup_steps: int
    tokens: int
    flops: float  # 6 N D (a grown variant: both phases)
    est_s: float
    operator: str = ""  # growth variants: "<operator>:<dim>"
    growth_steps: int = 0  # steps of the small model
    g: int = 1  # growth factor: the depth or width factor (as Du et al. count it)
    param_ratio: float = 1.0  # non-embedding parameters grown / small
    base_run: str = ""  # CPT phases: the run continued
    tokens_before: int = 0
    flops_before: float = 0.0
    branch_of: str = ""  # decay branches: the longest run of their size, mixture and seed
    branch_step: int = 0  # the steps a branch shares with it (those before its own decay begins)
    schedule: str = ""  # CPT phases: their own schedule ("" = the ladder's)

    def row(self) -> dict[str, Any]:
        """The plan's table row (also stored in the results folder for `ladder status`)."""
        m = self.model
        return {"run": self.run, "size": self.size, "multiple": self.multiple, "mixture": self.mixture,
                "seed": self.seed, "N": self.n, "d_model": m.d_model, "layers": m.n_layers, "D": self.tokens,
                "flops": self.flops, "steps": self.steps, "batch": self.batch_size, "lr": self.lr,
                "warmup": self.warmup_steps, "est_s": self.est_s, "operator": self.operator,
                "growth_steps": self.growth_steps, "g": self.g, "param_ratio": self.param_ratio, "base_run": self.base_run,
                "tokens_before": self.tokens_before, "flops_before": self.flops_before, "branch_of": self.branch_of,
                "branch_step": self.branch_step, "schedule": self.schedule, "weights": dict(self.weights)}


def size_label(n: float) -> str:
    """8288 -> '8.3k', 1.2e6 -> '1.2M'."""
    for scale, unit in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if n >= scale:
            return f"{n / scale:.2g}{unit}" if n < 10 * scale else f"{n / scale:.0f}{unit}"
    return f"{n:.0f}"


def vocab_size(cfg: LadderConfig) -> int:
    from ladderlab.data.pipeline import vocab_size as data_vocab

    return data_vocab(cfg.data)


def models(cfg: LadderConfig) -> dict[str, ModelConfig]:
    """size label -> model, smallest first: `sizes` through the shape rule, then the named `shapes`."""
    vocab, out = vocab_size(cfg), {}
    extra = {"qk_norm": cfg.qk_norm, **cfg.model_options}
    shape = {"vocab_size", "d_model", "n_layers", "n_heads", "d_ff"}  # what the sizes and shapes set
    fields = {f.name for f in dataclasses.fields(ModelConfig)} - shape
    if set(extra) - fields:
        raise LadderlabError(f"model_options: {', '.join(sorted(set(extra) - fields))} is not one of the model's "
                             f"other fields ({', '.join(sorted(fields))})")
    options = dict(head_dim=cfg.head_dim, width_per_layer=cfg.width_per_layer, ffn_ratio=cfg.ffn_ratio, **extra)
    for target in cfg.sizes:
        model = size_for(target, vocab, **options)
        n = param_counts(model)["non_embedding"]
        if abs(math.log(n / target)) > math.log(1.5):
            raise LadderlabError(f"sizes: {target:g} is too far from the shape rule (head_dim={cfg.head_dim}, "
                                 f"width_per_layer={cfg.width_per_layer}): nearest model has {n} non-embedding "
                                 f"parameters; pick a size near it, change the rule, or name a shape")
        label = size_label(n)
        if label in out:
            raise LadderlabError(f"sizes: {target:g} gives the same model as another size ({label})")
        out[label] = model
    for label, shape in cfg.shapes.items():
        if len(shape) != 4:
            raise LadderlabError(f"shapes.{label}={shape}: expected (d_model, n_layers, n_heads, d_ff)")
        d, layers, heads, ff = shape
        model = ModelConfig(vocab_size=vocab, d_model=d, n_layers=layers, n_heads=heads, d_ff=ff, **extra)
        check_model(model)
        out[label] = model
    if not out:
        raise LadderlabError("a ladder needs at least one entry in sizes or shapes")
    return dict(sorted(out.items(), key=lambda kv: param_counts(kv[1])["non_embedding"]))


def mixtures(cfg: LadderConfig) -> dict[str, dict[str, float]]:
    """The named mixtures, then `design` proposed ones (`mix1`, `mix2`, ...) over `design_domains`."""
    out = dict(cfg.mixtures)
    if not out and not cfg.design:
        raise LadderlabError("mixtures: a ladder needs at least one mixture (e.g. {'equal': {}})")
    if cfg.design:
        if len(cfg.design_domains) < 2:
            raise LadderlabError(f"design={cfg.design} needs design_domains (at least two corpus domains)")
        from ladderlab.scaling.mixing.design import propose_mixtures

        shares = propose_mixtures(cfg.design_domains, cfg.design, cfg.design_method, seed=0)
        for i in range(cfg.design):
            out[f"mix{i + 1}"] = {d: round(float(v[i]), 6) for d, v in shares.items() if v[i] > 0}
    return out


def hyperparameters(cfg: LadderConfig, n: float) -> tuple[int, float, float]:
    """(batch sequences, peak LR, warm-up tokens) of a model with n non-embedding parameters."""
    scale = n / cfg.n_ref
    batch = cfg.batch_size or max(cfg.batch_multiple,
                                  cfg.batch_multiple * round(cfg.batch_tokens_ref * scale ** (2 / 3) / cfg.data.seq_len / cfg.batch_multiple))
    lr = cfg.lr or min(cfg.lr_max, cfg.lr_ref * scale ** (-1 / 3))
    return batch, lr, cfg.warmup_tokens_per_param * n


def plan(cfg: LadderConfig) -> list[PlannedRun]:
    """Every run of the ladder, ordered by size, multiple, mixture and seed, each followed by its variants."""
    if not cfg.multiples or min(cfg.multiples) <= 0 or cfg.tokens_per_param <= 0:
        raise LadderlabError(f"multiples={cfg.multiples}, tokens_per_param={cfg.tokens_per_param}: must be positive")
    if cfg.data.seq_len <= 0 or cfg.evals_per_run < 1 or not cfg.seeds:
        raise LadderlabError(f"seq_len={cfg.data.seq_len}, evals_per_run={cfg.evals_per_run}, seeds={cfg.seeds}: "
                             "need seq_len, evals_per_run >= 1 and a seed")
    if not 0 <= cfg.decay_fraction <= 1 or cfg.branches and cfg.schedule != "wsd":
        raise LadderlabError(f"decay_fraction={cfg.decay_fraction}, branches={cfg.branches}, schedule="
                             f"{cfg.schedule!r}: need 0 <= decay_fraction <= 1, and branches=True needs schedule='wsd' "
                             "(decay branches leave a run that holds its peak rate)")
    sizes, mixes = models(cfg), mixtures(cfg)
    first_size, first_multiple, main = next(iter(sizes)), min(cfg.multiples), next(iter(mixes))
    runs = []
    for label, model in sizes.items():
        n = param_counts(model)["non_embedding"]
        batch, lr, warmup_tokens = hyperparameters(cfg, n)
        per_step = batch * cfg.data.seq_len
        for multiple in sorted(cfg.multiples):
            steps = max(1, round(multiple * cfg.tokens_per_param * n / per_step))
            warmup = cfg.warmup_steps if cfg.warmup_steps >= 0 else min(steps, max(1, round(warmup_tokens / per_step)))
            for name, weights in mixes.items():
                if cfg.mixture_grid == "smallest" and name != main and (label, multiple) != (first_size, first_multiple):
                    continue
                for seed in cfg.seeds:
                    tokens = steps * per_step
                    est = run_seconds(cfg, steps, tokens * flops_per_token(model, cfg.data.seq_len)["detailed"], model)
                    run_id = f"{label}-{multiple:g}xC-{name}-s{seed}"
                    run = PlannedRun(run_id, label, float(multiple), name, weights, seed, model, n, steps, batch,
                                     lr, min(warmup, steps), tokens, 6.0 * n * tokens, est)
                    runs += [run, *(grown(cfg, run, entry) for entry in cfg.growth), *continued(cfg, run, mixes)]
    return branched(cfg, runs) if cfg.branches else runs


def branch_step(cfg: LadderConfig, run: PlannedRun, longest: PlannedRun) -> int:
    """The steps WSD run `run` shares with the longer `longest` (same size and peak rate): up to the last step fed
    the peak rate, so step s <= floor(decay start) + 1 with `run.schedule.make_schedule`'s decay start
    steps - decay_fraction (steps - warm-up); 0 when their warm-ups differ (a run shorter than the warm-up)."""
    if run.warmup_steps != longest.warmup_steps:
        return 0
    return min(run.steps, math.floor(run.steps - cfg.decay_fraction * (run.steps - run.warmup_steps)) + 1)


def branched(cfg: LadderConfig, runs: list[PlannedRun]) -> list[PlannedRun]:
    """`runs` with each plain run (not a growth variant or CPT phase) that is shorter than the longest of its size,
    mixture and seed made a decay branch of it: `branch_of`, `branch_step`, and FLOPs and time of its cooldown."""
    longest: dict[tuple, PlannedRun] = {}
    for run in runs:
        key = (run.size, run.mixture, run.seed)
        if not (run.operator or run.base_run) and (key not in longest or run.steps > longest[key].steps):
            longest[key] = run
    out = []
    for run in runs:
        head = longest.get((run.size, run.mixture, run.seed))
        shared = 0 if run.operator or run.base_run or run is head else branch_step(cfg, run, head)
        if shared:
            left = (run.steps - shared) / run.steps
            run = dataclasses.replace(run, branch_of=head.run, branch_step=shared,
                                      flops=6.0 * run.n * (run.steps - shared) * (run.tokens // run.steps),
                                      est_s=cfg.overhead_s + (run.est_s - cfg.overhead_s) * left)
        out.append(run)
    return out


def branch_saving(runs: Sequence[PlannedRun]) -> dict[str, float]:
    """The FLOPs (6ND) a ladder with decay branches trains, against the same runs trained separately (each branch
    from step 0, as a cosine ladder trains them), and the fraction saved."""
    spent = sum(r.flops for r in runs)
    separate = spent + sum(6.0 * r.n * r.branch_step * r.tokens / r.steps for r in runs)
    return {"flops": spent, "separate_flops": separate, "saved": 1.0 - spent / separate}


def run_seconds(cfg: LadderConfig, steps: int, train_flops: float, model: ModelConfig) -> float:
    """One run's (or phase's) estimated seconds on this machine: overhead + steps x step_s + FLOPs / flops_per_s, the
    FLOPs its training's plus its task evaluations' (each of `evals_per_run` evaluations scores up to MAX_ITEMS x
    CHOICES rows of min(seq_len, ROW_LEN) tokens per task, forward only: a third of a trained token's FLOPs; the
    domains' eval sets are inside the fitted constants)."""
    rows = len(cfg.data.tasks) * tasks.MAX_ITEMS * tasks.CHOICES * min(cfg.data.seq_len, tasks.ROW_LEN)
    evals = cfg.evals_per_run * rows / 3 * flops_per_token(model, cfg.data.seq_len)["detailed"]
    return cfg.overhead_s + steps * cfg.step_s + (train_flops + evals) / cfg.flops_per_s


def estimate_s(runs: Sequence[PlannedRun]) -> float:
    """Estimated training time of planned runs on this machine (s): the one time estimate that `ladder plan` and the
    demo print (configs and help texts point here rather than carry their own numbers)."""
    return sum(r.est_s for r in runs)


def compile_rungs(cfg: LadderConfig, runs: Sequence[PlannedRun], topology: str) -> dict[str, dict[str, Any]]:
    """size label -> its train step compiled for a TPU slice by libtpu on this host (`run.topology.compile_on`:
    HBM per device, `fits`, compiled FLOPs per device, step time at the chip's peak). A size's runs share one model
    and batch, so its first run stands for them all."""
    from ladderlab.ladders.run.topology import compile_on, parse_topology

    topo = parse_topology(topology)
    firsts: dict[str, PlannedRun] = {}
    for run in runs:
        firsts.setdefault(run.size, run)
    return {size: compile_on(train_config(cfg, run, "unused"), topo) for size, run in firsts.items()}


def grown(cfg: LadderConfig, run: PlannedRun, entry: str) -> PlannedRun:
    """`run` grown by `entry` ("<operator>:<dim>"): the small model trains the first `growth_fraction` of the
    steps, the grown model the rest (G_learn's map training counted in its FLOPs, as `variants.grow` counts it)."""
    from ladderlab.ladders.variants.grow import GrowConfig
    from ladderlab.model.growth.operators import parse_operator, small_model

    operator, dim = parse_operator(entry, "growth")
    small_steps = round(cfg.growth_fraction * run.steps)
    if not 0 < small_steps < run.steps:
        raise LadderlabError(f"growth_fraction={cfg.growth_fraction}: gives {small_steps} of {run.run}'s "
                             f"{run.steps} steps to the small model; need at least one step in each phase")
    small = small_model(run.model, cfg.growth_factor, dim)
    n_small, per_step = param_counts(small)["non_embedding"], run.batch_size * cfg.data.seq_len
    before = 6.0 * n_small * small_steps * per_step
    if operator == "learn":
        before += 6.0 * run.n * GrowConfig().learn_steps * per_step
    steps = run.steps - small_steps
    est = run_seconds(cfg, run.steps, per_step * (small_steps * flops_per_token(small, cfg.data.seq_len)["detailed"] +
                                                  steps * flops_per_token(run.model, cfg.data.seq_len)["detailed"]),
                      run.model)
    return dataclasses.replace(run, run=f"{run.run}-grow-{operator}-{dim}", steps=steps,
                               warmup_steps=min(run.warmup_steps, steps), flops=before + 6.0 * run.n * steps * per_step,
                               est_s=est, operator=entry, growth_steps=small_steps, g=cfg.growth_factor,
                               param_ratio=run.n / n_small,
                               tokens_before=small_steps * per_step, flops_before=before)


def continued(cfg: LadderConfig, run: PlannedRun, mixes: dict[str, dict[str, float]]) -> list[PlannedRun]:
    """The CPT phases of `run`: from its final parameters, `fraction` x its tokens more on each new mixture, at
    peak rate `lr` x the run's (default 1) on `schedule` (default the ladder's)."""
    out = []
    schedules = get_args(get_type_hints(LadderConfig)["schedule"])
    for name, phase in cfg.cpt.items():
        lr, schedule = phase.get("lr", 1.0), phase.get("schedule", cfg.schedule)
        if not {"base", "mixture", "fraction"} <= set(phase) <= {"base", "mixture", "fraction", "lr", "schedule"} \
                or not phase["fraction"] > 0 or not lr > 0 or schedule not in schedules:
            raise LadderlabError(f"cpt.{name}={phase}: expected {{'base': mixture name, 'mixture': {{domain: weight}}, "
                                 f"'fraction': tokens as a fraction of the base run's, > 0}}, optionally 'lr': the "
                                 f"peak rate as a multiple of the base run's, > 0, and 'schedule': one of "
                                 f"{', '.join(schedules)}")
        if phase["base"] not in mixes:
            raise LadderlabError(f"cpt.{name}: base={phase['base']!r} is not one of the ladder's mixtures")
        if phase["base"] != run.mixture:
            continue
        steps = max(1, round(phase["fraction"] * run.steps))
        tokens = steps * run.batch_size * cfg.data.seq_len
        est = run_seconds(cfg, steps, tokens * flops_per_token(run.model, cfg.data.seq_len)["detailed"], run.model)
        out.append(dataclasses.replace(run, run=f"{run.run}-cpt-{name}", mixture=name, weights=dict(phase["mixture"]),
                                       steps=steps, warmup_steps=min(run.warmup_steps, steps), tokens=tokens,
                                       lr=lr * run.lr, schedule=schedule, flops=6.0 * run.n * tokens, est_s=est,
                                       base_run=run.run,
                                       tokens_before=run.tokens, flops_before=run.flops))
    return out


def train_config(cfg: LadderConfig, run: PlannedRun, out: str | Path) -> TrainConfig:
    """The TrainConfig of one planned run, writing to `out`/runs/<run id>."""
    data = dataclasses.replace(cfg.data, mixture=dict(run.weights), seed=run.seed, train_tokens=run.tokens)
    every = max(1, run.steps // cfg.evals_per_run)
    return TrainConfig(model=run.model, data=data, run_dir=str(as_path(out) / "runs" / run.run), seed=run.seed,
                       mesh=cfg.mesh, batch_size=run.batch_size, steps=run.steps, lr=run.lr,
                       weight_decay=cfg.weight_decay, schedule=run.schedule or cfg.schedule,
                       warmup_steps=run.warmup_steps, min_lr_ratio=cfg.min_lr_ratio, decay_fraction=cfg.decay_fraction,
                       eval_every=every, eval_batch_size=8, log_every=max(1, run.steps // 25),
                       checkpoint_every=every, keep_last=1, progress=cfg.progress, wandb_project=cfg.wandb_project,
                       wandb_entity=cfg.wandb_entity, wandb_mode=cfg.wandb_mode,
                       wandb_group=f"{cfg.name}/{as_path(out).name}" if cfg.wandb_project else "")
