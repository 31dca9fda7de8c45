"""Aggregate tokens/s of M tiny models trained as one swarm (`ladders.variants.swarm`) against one after another, in one run.

Every side trains the same members (own init seed and data) for the same steps, fed the same host batches through
the same `global_batch` path, after untimed warm-up steps (compilation). Sequential sides train one model after
another with the plain trainer, on one device and data-parallel over all host devices; `ratio` divides the swarm's
throughput by the better of the two. Swarm sides: all members vmapped at once on one device (`vmap`), a loop of
`--chunk`-member vmaps on one device (`chunked`), and the member axis sharded over all host devices, each device
looping over its own members in chunks (`sharded`, the one `ratio` uses). Rounds alternate the sides so load from
other processes hits all; medians are reported. CPU host devices: one per core (XLA_FLAGS, unless already set).
Default shape: the demo ladder's mixture-sweep model (3.1k non-embedding parameters: d=8, 1 layer, 1 head).
--smoke: 2 members, 16-token rows, two timed steps, one round.

    python benchmarks/swarm_throughput.py --json OUT [--models 16] [--steps 5] [--rounds 3] [--d-model 128 ...]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import time

# One CPU device per core (an accelerator host is unaffected); set before jax is imported.
os.environ.setdefault("XLA_FLAGS", f"--xla_force_host_platform_device_count={os.cpu_count()}")

import jax  # noqa: E402
import numpy as np  # noqa: E402

from ladderlab.data.config import DataConfig  # noqa: E402
from ladderlab.ladders.run.config import TrainConfig  # noqa: E402
from ladderlab.ladders.variants.swarm import Swarm  # noqa: E402
from ladderlab.ladders.run.train import Trainer  # noqa: E402
from ladderlab.model.config import ModelConfig  # noqa: E402
from ladderlab.model.counts import flops_per_token, param_counts  # noqa: E402

from common import emit, make_batch, parse  # noqa: E402  (benchmarks/common.py)


def matmul_flop_s(n: int = 512, repeats: int = 20) -> float:
    """FLOP/s of one jitted n x n x n fp32 matmul on this device now: what a compute-bound step could reach."""
    a = jax.numpy.ones((n, n), jax.numpy.float32)
    matmul = jax.jit(lambda x: x @ x)
    jax.block_until_ready(matmul(a))
    start = time.perf_counter()
    for _ in range(repeats):
        out = matmul(a)
    jax.block_until_ready(out)
    return 2 * n**3 * repeats / (time.perf_counter() - start)


def step_costs(cfg: TrainConfig, device: object, rows: tuple[int, int] = (2, 8), steps: int = 40) -> dict:
    """The lone trainer's step time at two batch sizes, split into a fixed part per step and a part per row: no
    swarm can beat one-after-another by more than step_s / (batch x row_s) without computing faster per row."""
    seconds = []
    for batch in rows:
        trainer = Trainer(dataclasses.replace(cfg, batch_size=batch), [device])
        state, local = trainer.init(), make_batch(batch, cfg.data.seq_len, cfg.model.vocab_size, seed=0)
        with jax.set_mesh(trainer.mesh):
            for timed in (False, True):  # compile, then time
                start = time.perf_counter()
                for _ in range(steps):
                    state, metrics = trainer.step(state, trainer.global_batch(local), np.float32(1e-3))
                jax.block_until_ready(metrics)
        seconds.append((time.perf_counter() - start) / steps)
    row_s = (seconds[1] - seconds[0]) / (rows[1] - rows[0])
    step_s = seconds[0] + row_s * (cfg.batch_size - rows[0])
    return {"rows": rows, "step_s": seconds, "fixed_s": seconds[0] - rows[0] * row_s, "row_s": row_s,
            "ratio_bound": step_s / (cfg.batch_size * row_s)}


def member_configs(args: argparse.Namespace) -> list[TrainConfig]:
    model = ModelConfig(vocab_size=args.vocab, d_model=args.d_model, n_layers=args.layers, n_heads=args.heads,
                        d_ff=args.d_ff, qk_norm=True)
    base = TrainConfig(model=model, data=DataConfig(seq_len=args.seq), mesh=(1, 1, 1), batch_size=args.batch,
                       steps=1000, warmup_steps=10, progress=False)
    return [dataclasses.replace(base, run_dir=f"swarm_bench/m{i}", seed=i) for i in range(args.models)]


def run(args: argparse.Namespace) -> dict:
    cfgs, devices = member_configs(args), jax.devices()
    batches = [[make_batch(args.batch, args.seq, args.vocab, seed=100 * m + s) for s in range(args.steps)]
               for m in range(args.models)]
    swarms = {"vmap": Swarm(cfgs, devices[:1]), "chunked": Swarm(cfgs, devices[:1], chunk=args.chunk),
              "sharded": Swarm(cfgs, devices, chunk=args.chunk, member_shards=len(devices))}
    trainers = {"sequential": Trainer(cfgs[0], devices[:1]),
                "sequential_dp": Trainer(dataclasses.replace(cfgs[0], mesh=(len(devices), 1, 1)), devices)}
    first = swarms["vmap"].init()  # compiled once; every side starts from its own copy (each side donates its state)
    box = {name: jax.device_put(first, swarm.shardings, may_alias=False) for name, swarm in swarms.items()}
    box.update({(name, m): jax.device_put(state, t.shardings, may_alias=False) for name, t in trainers.items()
                for m, state in enumerate(swarms["vmap"].unstack(first))})
    lr = np.float32(1e-3)

    def swarm_side(name: str):
        def steps_of(steps: list[int]) -> None:
            swarm = swarms[name]
            with jax.set_mesh(swarm.mesh):
                for s in steps:
                    box[name], metrics = swarm.step(box[name], swarm.global_batch([b[s] for b in batches]),
                                                    swarm.lr_MxS)
                jax.block_until_ready(metrics)
        return steps_of

    def sequential_side(name: str):
        def steps_of(steps: list[int]) -> None:
            trainer = trainers[name]
            with jax.set_mesh(trainer.mesh):
                for m in range(args.models):  # one model after another
                    for s in steps:
                        box[name, m], metrics = trainer.step(box[name, m], trainer.global_batch(batches[m][s]), lr)
                    jax.block_until_ready(metrics)
        return steps_of

    sides = {**{name: sequential_side(name) for name in trainers}, **{name: swarm_side(name) for name in swarms}}
    tokens = args.models * args.steps * args.batch * args.seq
    for run_side in sides.values():
        run_side([0, 1])  # warm-up: compile every step function
    rounds = []
    for _ in range(args.rounds):
        row = {}
        for name, run_side in sides.items():
            start = time.perf_counter()
            run_side(list(range(args.steps)))
            row[name] = tokens / (time.perf_counter() - start)
        rounds.append(row)
    median = {name: statistics.median(r[name] for r in rounds) for name in sides}
    best_sequential = max(median["sequential"], median["sequential_dp"])
    flops = flops_per_token(cfgs[0].model, args.seq)["detailed"]
    return {"models": args.models, "ratio": median["sharded"] / best_sequential,
            "tok_s": median, "ratios": {name: median[name] / best_sequential for name in swarms},
            "rounds": rounds, "chunk": args.chunk, "host_devices": len(devices),
            "model": {**dataclasses.asdict(cfgs[0].model), **param_counts(cfgs[0].model)},
            "batch": args.batch, "seq_len": args.seq, "steps_per_round": args.steps,
            "device": devices[0].device_kind, "backend": jax.default_backend(), "cpu_cores": os.cpu_count(),
            "load_average": os.getloadavg(), "flops_per_token": flops,
            "sequential_flop_s": best_sequential * flops, "swarm_flop_s": median["sharded"] * flops,
            "matmul_flop_s": matmul_flop_s(), "sequential_step_costs": step_costs(cfgs[0], devices[0])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=16)
    parser.add_argument("--d-model", type=int, default=8)
    parser.add_argument("--layers", type=int, default=1)
    parser.add_argument("--heads", type=int, default=1)
    parser.add_argument("--d-ff", type=int, default=32)
    parser.add_argument("--vocab", type=int, default=259)
    parser.add_argument("--chunk", type=int, default=1, help="members vmapped at once in the chunked sides")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per model per round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parse(parser, smoke=dict(models=2, batch=2, seq=16, steps=2, rounds=1))
    emit(run(args), args.json)


if __name__ == "__main__":
    main()
