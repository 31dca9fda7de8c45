"""A short accelerator check: train-step MFU at ~125M, 350M and 760M, and the swarm speed-up of 16 tiny models.

Runs as is from a source checkout (no install) where only jax, flax, optax and numpy import: no grain, no gin, no
network, synthetic batches (two packed documents a row). Each size is the ladder's shape (`model.counts.size_for`)
and batch rule (160 x 2048 tokens x (N / 1.08e8)^(2/3), as `ladders.config.LadderConfig`'s defaults), bf16 compute
with fp32 master weights, layers scanned with remat, chunked loss, `attention=auto` (cuDNN on GPU, splash on TPU),
micro-batches of --micro sequences accumulated to the global batch. MFU = tokens/s x causal FLOPs per token
(`model.counts`) / the chip's nominal bf16 peak (or --peak; a device kind not in PEAK_BF16, such as a CPU, uses
the measured matmul); `matmul_share` divides by the measured FLOP/s of a
large bf16 matmul instead. The swarm: 16 members vmapped in one jitted step against the same 16 run one after
another (`swarm_speedup` = sequential time / vmapped time). --smoke: tiny sizes on whatever backend (CPU: seconds).

    python benchmarks/device_check.py --json OUT [--sizes 125e6,350e6,760e6] [--steps 3] [--peak FLOP/s] [--smoke]
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np

from common import emit, make_batch, parse  # benchmarks/common.py

ROOT = Path(__file__).resolve().parents[1]
if importlib.util.find_spec("ladderlab") is None:  # a source checkout: the repository root is the package
    _spec = importlib.util.spec_from_file_location("ladderlab", ROOT / "__init__.py",
                                                    submodule_search_locations=[str(ROOT)])
    sys.modules["ladderlab"] = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(sys.modules["ladderlab"])

from ladderlab.ladders.run import step as train  # noqa: E402  (imports neither gin nor grain)
from ladderlab.ladders.run.state import abstract_model, init_state, seeded_state, state_shardings  # noqa: E402
from ladderlab.model.attention import choose  # noqa: E402
from ladderlab.model.counts import flops_per_token, param_counts, size_for  # noqa: E402
from ladderlab.model.sharding import batch_sharding, make_mesh  # noqa: E402

# nominal dense bf16 FLOP/s per chip, by a substring of jax's device_kind
PEAK_BF16 = {"H200": 989e12, "H100": 989e12, "GH200": 989e12, "B200": 2250e12, "A100": 312e12, "L40S": 362e12,
             "L4": 121e12, "A10G": 70e12, "TPU v5 lite": 197e12, "TPU v5p": 459e12, "TPU v5": 459e12,
             "TPU v6 lite": 918e12, "TPU v4": 275e12}
ADAMW = dict(b1=0.9, b2=0.95, eps=1e-8, weight_decay=0.1, clip_norm=1.0, z_loss=0.0)


def nominal_peak(kind: str) -> float:
    """The bf16 peak of a device kind (nan when unknown: pass --peak)."""
    return next((v for k, v in sorted(PEAK_BF16.items(), key=lambda kv: -len(kv[0])) if k in kind), float("nan"))


def ladder_batch(n: float, seq: int, multiple: int) -> int:
    """The ladder's batch rule in sequences of `seq` tokens, rounded to a multiple of `multiple`."""
    return max(multiple, multiple * round(160 * 2048 * (n / 1.08e8) ** (2 / 3) / seq / multiple))


def matmul_flops(n: int, dtype: jnp.dtype, reps: int = 5) -> float:
    """Measured FLOP/s of an n x n matmul (best of `reps`)."""
    a = jax.random.normal(jax.random.key(0), (n, n), dtype)
    dot = jax.jit(lambda a: a @ a)
    dot(a).block_until_ready()
    best = min(_seconds(lambda: dot(a).block_until_ready()) for _ in range(reps))
    return 2 * n**3 / best


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def train_step_rate(model, batch_size: int, micro: int, seq: int, steps: int) -> dict:
    """Compile and time the trainer's jitted step (`ladders.run.step`) on one synthetic batch: seconds, tokens/s."""
    mesh = make_mesh((1, -1, 1))
    accum = max(1, batch_size // micro)
    cfg = SimpleNamespace(**ADAMW, batch_size=accum * micro, grad_accum=accum)
    optimizer = train.make_optimizer(cfg)
    graphdef, abstract = abstract_model(model)
    shardings = state_shardings(abstract, optimizer, mesh)
    bshard = batch_sharding(mesh, cfg.batch_size)
    step = train.jit_train_step(graphdef, optimizer, cfg, shardings, bshard)
    state = init_state(model, 0, optimizer, shardings)
    batch = {k: jax.device_put(v, bshard) for k, v in make_batch(cfg.batch_size, seq, model.vocab_size).items()}
    lr = np.float32(1e-4)
    with jax.set_mesh(mesh):
        start = time.perf_counter()
        state, metrics = step(state, batch, lr)
        jax.block_until_ready(metrics)
        compile_s = time.perf_counter() - start
        times = []
        for _ in range(steps):
            start = time.perf_counter()
            state, metrics = step(state, batch, lr)
            jax.block_until_ready(metrics)
            times.append(time.perf_counter() - start)
    tokens = cfg.batch_size * seq
    return {"batch": cfg.batch_size, "grad_accum": accum, "tokens_per_step": tokens, "compile_s": compile_s,
            "step_s": min(times), "tok_s": tokens / min(times), "loss": float(metrics["loss"])}


def swarm_speedup(model, members: int, batch_size: int, seq: int, steps: int) -> dict:
    """Seconds per step of `members` runs vmapped in one jitted step, and of the same runs one after another."""
    optimizer = train.make_optimizer(SimpleNamespace(**ADAMW))
    graphdef, _ = abstract_model(model)
    one = jax.jit(lambda s, b, lr: train.train_step(graphdef, optimizer, s, b, lr))
    many = jax.jit(jax.vmap(lambda s, b, lr: train.train_step(graphdef, optimizer, s, b, lr)))
    stacked = jax.jit(jax.vmap(seeded_state(model, optimizer)))(jnp.arange(members))
    singles = [jax.tree.map(lambda x: x[m], stacked) for m in range(members)]
    rows = [make_batch(batch_size, seq, model.vocab_size, seed=m) for m in range(members)]
    batches = {k: jnp.stack([r[k] for r in rows]) for k in rows[0]}
    lrs = jnp.full((members,), 1e-3, jnp.float32)

    def vmapped():
        nonlocal stacked
        stacked, metrics = many(stacked, batches, lrs)
        jax.block_until_ready(metrics)

    def sequential():
        for m in range(members):
            singles[m], metrics = one(singles[m], rows[m], lrs[m])
        jax.block_until_ready(metrics)

    vmapped(), sequential()  # compile
    v = min(_seconds(vmapped) for _ in range(steps))
    s = min(_seconds(sequential) for _ in range(steps))
    return {"members": members, "vmap_step_s": v, "sequential_step_s": s, "swarm_speedup": s / v,
            "d_model": model.d_model, "n_layers": model.n_layers}


def run(args: argparse.Namespace) -> dict:
    device = jax.devices()[0]
    dtype = jnp.bfloat16 if args.dtype == "bfloat16" else jnp.float32
    measured = matmul_flops(args.matmul, dtype)
    peak, peak_how = args.peak or nominal_peak(device.device_kind), "--peak" if args.peak else "nominal bf16"
    if not np.isfinite(peak):
        peak, peak_how = measured, f"measured {args.dtype} matmul ({device.device_kind!r} has no nominal peak here)"
    rows = []
    for target in (float(s) for s in args.sizes.split(",")):
        model = size_for(target, args.vocab, qk_norm=True, scan_layers=True, remat=True, compute_dtype=args.dtype,
                         remat_policy=args.remat_policy)
        batch = ladder_batch(param_counts(model)["non_embedding"], args.seq, args.micro)
        flops = flops_per_token(model, args.seq)["causal"]
        try:
            row = train_step_rate(model, batch, args.micro, args.seq, args.steps)
        except Exception as e:  # noqa: BLE001  one size that fails (memory, a kernel) must not hide the others
            row = {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"}
        row.update({"target_params": target, "non_embedding": param_counts(model)["non_embedding"],
                    "d_model": model.d_model, "n_layers": model.n_layers, "flops_per_token": flops})
        if "tok_s" in row:
            row["mfu"] = row["tok_s"] * flops / peak
            row["matmul_share"] = row["tok_s"] * flops / measured
        rows.append(row)
        print(rows[-1], flush=True)
    tiny = size_for(args.swarm_params, args.vocab, qk_norm=True, compute_dtype=args.dtype)
    swarm = swarm_speedup(tiny, args.members, args.swarm_batch, args.swarm_seq, args.steps)
    return {"device": device.device_kind, "backend": jax.default_backend(), "devices": jax.device_count(),
            "jax": jax.__version__, "dtype": args.dtype, "attention": choose("auto", jax.default_backend()),
            "seq_len": args.seq, "vocab": args.vocab, "micro_batch": args.micro, "remat_policy": args.remat_policy,
            "peak_flops": peak, "peak_how": peak_how, "matmul_flops": measured, "flops_convention": "causal",
            "sizes": rows, "swarm": swarm, "swarm_speedup": swarm["swarm_speedup"],
            "mfu_350m": next((r.get("mfu") for r in rows if abs(r["target_params"] - 350e6) < 1), None)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="125e6,350e6,760e6", help="non-embedding parameter targets (size_for)")
    parser.add_argument("--seq", type=int, default=2048)
    parser.add_argument("--vocab", type=int, default=50304)
    parser.add_argument("--micro", type=int, default=16, help="sequences per micro-batch (the rest accumulates)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per size (the fastest counts)")
    parser.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float32"))
    parser.add_argument("--remat-policy", default="dots_with_no_batch_dims_saveable")
    parser.add_argument("--peak", type=float, default=0.0, help="peak FLOP/s per chip (default: by device kind)")
    parser.add_argument("--matmul", type=int, default=8192, help="size of the square matmul that measures the peak")
    parser.add_argument("--members", type=int, default=16)
    parser.add_argument("--swarm-params", type=float, default=1e6)
    parser.add_argument("--swarm-batch", type=int, default=8)
    parser.add_argument("--swarm-seq", type=int, default=256)
    args = parse(parser, smoke=dict(sizes="5e4", seq=64, vocab=256, micro=8, steps=1, dtype="float32",
                                    matmul=256, members=4, swarm_params=5e4, swarm_batch=2, swarm_seq=32))
    emit(run(args), args.json)


if __name__ == "__main__":
    main()
