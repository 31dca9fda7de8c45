"""Aggregate tokens/s of M tiny models trained as one swarm (`ladders.swarm`) against one after another, in one run.

Three sides run the same members (own init seed and data; one LR schedule, so the sequential side compiles one step)
for the same steps on one device, fed the same host batches through the same `global_batch` path, after untimed
warm-up steps (compilation): the swarm with all members vmapped at once (`swarm_tok_s`, `ratio`), the
swarm with members looped one by one inside its step (chunk=1, `swarm_loop_*`) and plain sequential training.
Rounds alternate the three, so load from other processes on a shared machine hits all; medians are reported.
Default shape: a RegMix-style ~1M-non-embedding-parameter byte-level decoder (d=128, 4 layers, 4 heads, d_ff=512).

    python benchmarks/swarm_throughput.py --json OUT [--models 16] [--steps 5] [--rounds 3]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import time

import jax
import numpy as np

from ladderlab.data.config import DataConfig
from ladderlab.ladders.config import TrainConfig
from ladderlab.ladders.swarm import Swarm
from ladderlab.ladders.train import Trainer
from ladderlab.model.config import ModelConfig
from ladderlab.model.counts import flops_per_token, param_counts


def make_batch(batch: int, seq: int, vocab: int, seed: int) -> dict[str, np.ndarray]:
    """Random tokens, two packed documents per row (so the segment mask is exercised)."""
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, vocab, (batch, seq + 1)).astype(np.int32)
    segments = np.where(np.arange(seq) < seq // 2, 1, 2).astype(np.int32)[None].repeat(batch, 0)
    positions = np.where(segments == 1, np.arange(seq), np.arange(seq) - seq // 2).astype(np.int32)
    return {"inputs": tokens[:, :-1], "targets": tokens[:, 1:], "segment_ids": segments, "positions": positions,
            "mask": np.ones((batch, seq), np.float32)}


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


def member_configs(args: argparse.Namespace) -> list[TrainConfig]:
    model = ModelConfig(vocab_size=args.vocab, d_model=args.d_model, n_layers=args.layers, n_heads=args.heads,
                        d_ff=args.d_ff)
    base = TrainConfig(model=model, data=DataConfig(seq_len=args.seq), mesh=(1, 1, 1), batch_size=args.batch,
                       steps=1000, warmup_steps=10, progress=False)
    return [dataclasses.replace(base, run_dir=f"swarm_bench/m{i}", seed=i) for i in range(args.models)]


def run(args: argparse.Namespace) -> dict:
    cfgs = member_configs(args)
    device = jax.devices()[:1]
    batches = [[make_batch(args.batch, args.seq, args.vocab, seed=100 * m + s) for s in range(args.steps)]
               for m in range(args.models)]
    swarms = {"vmap": Swarm(cfgs, device), "loop": Swarm(cfgs, device, chunk=1)}  # all members at once / one by one
    trainer = Trainer(cfgs[0], device)
    init = swarms["vmap"].init()
    box = dict(enumerate(swarms["vmap"].unstack(init)))
    box.update(vmap=init, loop=jax.tree.map(lambda x: x.copy(), init))

    def swarm_steps(name: str, steps: list[int]) -> None:
        swarm = swarms[name]
        for s in steps:
            box[name], metrics = swarm.step(box[name], swarm.global_batch([b[s] for b in batches]), swarm.lr_MxS)
        jax.block_until_ready(metrics)

    def sequential_steps(steps: list[int]) -> None:
        for m in range(args.models):  # one model after another
            for s in steps:
                box[m], metrics = trainer.step(box[m], trainer.global_batch(batches[m][s]))
            jax.block_until_ready(metrics)

    sides = {"vmap": lambda steps: swarm_steps("vmap", steps), "loop": lambda steps: swarm_steps("loop", steps),
             "sequential": sequential_steps}
    tokens = args.models * args.steps * args.batch * args.seq
    rounds = []
    with jax.set_mesh(trainer.mesh):
        for run_side in sides.values():
            run_side([0, 1])  # warm-up: compile every step function
        for _ in range(args.rounds):
            row = {}
            for name, run_side in sides.items():
                start = time.perf_counter()
                run_side(list(range(args.steps)))
                row[name] = tokens / (time.perf_counter() - start)
            rounds.append(row)
        roofline = matmul_flop_s()
    median = {name: statistics.median(r[name] for r in rounds) for name in sides}
    flops = flops_per_token(cfgs[0].model, args.seq)["detailed"]
    return {"models": args.models, "swarm_tok_s": median["vmap"], "sequential_tok_s": median["sequential"],
            "ratio": median["vmap"] / median["sequential"],
            "swarm_loop_tok_s": median["loop"], "swarm_loop_ratio": median["loop"] / median["sequential"],
            "rounds": rounds, "model": {**dataclasses.asdict(cfgs[0].model), **param_counts(cfgs[0].model)},
            "batch": args.batch, "seq_len": args.seq, "steps_per_round": args.steps,
            "device": jax.devices()[0].device_kind, "backend": jax.default_backend(), "cpu_cores": os.cpu_count(),
            "load_average": os.getloadavg(), "flops_per_token": flops,
            "sequential_flop_s": median["sequential"] * flops, "swarm_flop_s": median["vmap"] * flops,
            "matmul_flop_s": roofline}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=16)
    parser.add_argument("--d-model", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--d-ff", type=int, default=512)
    parser.add_argument("--vocab", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per model per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", metavar="OUT")
    args = parser.parse_args()
    doc = run(args)
    print(json.dumps(doc, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=2)


if __name__ == "__main__":
    main()
