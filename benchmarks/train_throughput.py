"""Tokens/s of one train step, ladderlab (JAX) against a PyTorch model of the same architecture, in one run.

Same shapes, batch, packed-document attention mask, fp32 on CPU (bf16 compute on accelerators for ladderlab),
AdamW with global-norm clipping at the same learning rate; the PyTorch side runs eagerly, or compiled with
--torch-compile (torch comes with the `bench` extra; without it the JSON says "baseline": "skipped" and the torch
keys are null). FLOPs are model.counts' `causal` count (attention at the pairs a causal mask keeps); `*_peak_share`
is achieved FLOP/s over the measured peak: the best of a large fp32 matmul (jax, and torch when installed) on all
cores, timed in the same run; `*_mfu` divides by the nominal peak (cores x clock x FLOPs/cycle, or --peak).
--smoke: the smallest size (82k parameters), batch 2 x 32, one timed step.

    python benchmarks/train_throughput.py --json OUT [--sizes 1e6,5e6,20e6] [--headline 5e6] [--rounds 3]
        [--attention auto|dense|xla] [--smoke]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time

import jax
import numpy as np

from ladderlab.data.config import DataConfig
from ladderlab.ladders.run.config import TrainConfig
from ladderlab.ladders.run.train import Trainer
from ladderlab.model.config import ModelConfig
from ladderlab.model.counts import flops_per_token, param_counts, size_for

from common import emit, make_batch, parse, peer  # benchmarks/common.py


def cpu_peak_flops() -> tuple[float, str]:
    """(nominal peak fp32 FLOP/s of this host's CPU, how it was derived): two FMA pipes of the widest vectors."""
    flags = open("/proc/cpuinfo").read()
    mhz = max(float(line.split(":")[1]) for line in flags.splitlines() if line.startswith("cpu MHz"))
    per_cycle = 64 if " avx512f" in flags else 32 if " avx2" in flags else 16
    cores = os.cpu_count() or 1
    return cores * mhz * 1e6 * per_cycle, f"{cores} cores x {mhz:.0f} MHz x {per_cycle} fp32 FLOPs/cycle"


def matmul_peak(n: int, rounds: int, torch=None) -> dict[str, float]:
    """FLOP/s of an n x n fp32 matmul, best of `rounds`, by jax (jitted) and by torch when given."""
    a = jax.random.normal(jax.random.key(0), (n, n), jax.numpy.float32)
    dot = jax.jit(lambda a: a @ a)
    runs = {"jax": lambda: dot(a).block_until_ready()}
    if torch is not None:
        t = torch.randn(n, n)
        runs["torch"] = lambda: torch.mm(t, t)
    return {name: 2 * n**3 / seconds for name, seconds in best_step_times(runs, rounds, 2).items()}


def best_step_times(steps: dict, rounds: int, per_round: int) -> dict[str, float]:
    """Seconds per step of each named step function: two untimed warm-up steps (compilation), then `rounds`
    rounds that time every function in turn for `per_round` steps; the best round counts (robust to a busy host)."""
    for step in steps.values():
        step(), step()
    best = {name: math.inf for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            start = time.perf_counter()
            for _ in range(per_round):
                step()
            best[name] = min(best[name], (time.perf_counter() - start) / per_round)
    return best


def ladderlab_step(model: ModelConfig, batch: dict[str, np.ndarray], lr: float = 1e-3):
    """A closure running one ladderlab train step on one device (state donated and replaced)."""
    cfg = TrainConfig(model=model, data=DataConfig(seq_len=batch["inputs"].shape[1]), mesh=(1, 1, 1),
                      batch_size=batch["inputs"].shape[0], steps=1000, warmup_steps=10, progress=False)
    trainer = Trainer(cfg, jax.devices()[:1])
    box = {"state": trainer.init()}
    device_batch = trainer.global_batch(batch)

    def step():
        with jax.set_mesh(trainer.mesh):
            box["state"], metrics = trainer.step(box["state"], device_batch, np.float32(lr))
        jax.block_until_ready(metrics)

    return step


def torch_step(cfg: ModelConfig, batch: dict[str, np.ndarray], compile: bool = False, lr: float = 1e-3):
    """The same decoder and step in eager PyTorch: pre-norm (or norm-after) blocks, RoPE, GQA via SDPA, SwiGLU."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    torch.manual_seed(0)
    torch.set_num_threads(os.cpu_count() or 1)
    D, H, K, E, V = cfg.d_model, cfg.n_heads, cfg.kv_heads, cfg.head_dim, cfg.vocab_size

    class RMSNorm(nn.Module):
        def __init__(self, dim: int):
            super().__init__()
            self.scale = nn.Parameter(torch.ones(dim))

        def forward(self, x):
            return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + cfg.norm_eps) * self.scale

    def rope(x, positions):  # x: B x N x L x E
        half = E // 2
        angle = positions[:, None, :, None].float() * cfg.rope_theta ** (-torch.arange(half) / half)
        x1, x2 = x[..., :half], x[..., half:]
        return torch.cat([x1 * angle.cos() - x2 * angle.sin(), x2 * angle.cos() + x1 * angle.sin()], -1)

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn_norm, self.mlp_norm = RMSNorm(D), RMSNorm(D)
            self.wq, self.wo = nn.Linear(D, H * E, bias=False), nn.Linear(H * E, D, bias=False)
            self.wk, self.wv = nn.Linear(D, K * E, bias=False), nn.Linear(D, K * E, bias=False)
            self.q_norm, self.k_norm = (RMSNorm(H * E), RMSNorm(K * E)) if cfg.qk_norm else (None, None)
            self.w_gate, self.w_up = nn.Linear(D, cfg.d_ff, bias=False), nn.Linear(D, cfg.d_ff, bias=False)
            self.w_down = nn.Linear(cfg.d_ff, D, bias=False)

        def attn(self, x, positions, mask):
            B, L, _ = x.shape
            q, k, v = self.wq(x), self.wk(x), self.wv(x)
            if self.q_norm is not None:
                q, k = self.q_norm(q), self.k_norm(k)
            q = rope(q.view(B, L, H, E).transpose(1, 2), positions)
            k = rope(k.view(B, L, K, E).transpose(1, 2), positions)
            v = v.view(B, L, K, E).transpose(1, 2)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=K != H)
            return self.wo(out.transpose(1, 2).reshape(B, L, H * E))

        def mlp(self, x):
            return self.w_down(F.silu(self.w_gate(x)) * self.w_up(x))

        def forward(self, x, positions, mask):
            if cfg.norm_after:
                x = x + self.attn_norm(self.attn(x, positions, mask))
                return x + self.mlp_norm(self.mlp(x))
            x = x + self.attn(self.attn_norm(x), positions, mask)
            return x + self.mlp(self.mlp_norm(x))

    class Decoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(V, D)
            self.blocks = nn.ModuleList([Block() for _ in range(cfg.n_layers)])
            self.final_norm = RMSNorm(D)
            self.head = None if cfg.tie_embeddings else nn.Linear(D, V, bias=False)

        def forward(self, inputs, positions, segments):
            L = inputs.shape[1]
            causal = torch.ones(L, L, dtype=torch.bool).tril()
            mask = (causal[None] & (segments[:, :, None] == segments[:, None, :]))[:, None]
            x = self.embed(inputs)
            for block in self.blocks:
                x = block(x, positions, mask)
            x = self.final_norm(x)
            return x @ self.embed.weight.T if self.head is None else self.head(x)

    model = torch.compile(Decoder()) if compile else Decoder()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    t = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in batch.items()}
    t = {k: v.long() if k in ("inputs", "targets") else v for k, v in t.items()}

    def step():
        logits = model(t["inputs"], t["positions"], t["segment_ids"])
        ce = F.cross_entropy(logits.reshape(-1, V), t["targets"].reshape(-1), reduction="none")
        loss = (ce * t["mask"].reshape(-1)).sum() / t["mask"].sum()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        loss.item()

    return step


def run(args: argparse.Namespace) -> dict:
    peak, peak_how = cpu_peak_flops() if jax.default_backend() == "cpu" else (float("nan"), "set --peak")
    peak = args.peak or peak
    torch, baseline = peer("torch")
    matmul = matmul_peak(args.matmul, args.rounds, torch)
    measured = max(matmul.values())
    batch = make_batch(args.batch, args.seq, args.vocab)
    tokens = args.batch * args.seq
    rows = []
    for target in (float(s) for s in args.sizes.split(",")):
        model = size_for(target, args.vocab, qk_norm=True, attention=args.attention)
        flops = flops_per_token(model, args.seq)
        row = {"target_params": target, "non_embedding": param_counts(model)["non_embedding"],
               "d_model": model.d_model, "n_layers": model.n_layers, "n_heads": model.n_heads,
               "flops_per_token": flops["causal"], "flops_per_token_full_attention": flops["detailed"]}
        steps = {"ladderlab": ladderlab_step(model, batch, args.lr)}
        if torch:
            steps["torch"] = torch_step(model, batch, args.torch_compile, args.lr)
        for name, seconds in best_step_times(steps, args.rounds, args.steps).items():
            row[f"{name}_tok_s"] = tokens / seconds
            row[f"{name}_mfu"] = row[f"{name}_tok_s"] * flops["causal"] / peak
            row[f"{name}_peak_share"] = row[f"{name}_tok_s"] * flops["causal"] / measured
        if torch:
            row["ratio"] = row["ladderlab_tok_s"] / row["torch_tok_s"]
        rows.append(row)
        print(json.dumps(row))
    head = min(rows, key=lambda r: abs(math.log(r["target_params"] / args.headline)))
    doc = {"device": jax.devices()[0].device_kind, "backend": jax.default_backend(), "batch": args.batch,
           "seq_len": args.seq, "vocab": args.vocab, "precision": "fp32" if jax.default_backend() == "cpu" else "bf16",
           "attention": args.attention, "lr": args.lr, "peak_flops": peak, "peak_how": peak_how,
           "matmul_flops": matmul, "matmul_n": args.matmul, "flops_convention": "causal",
           "headline_params": head["target_params"], "ladderlab_tok_s": head["ladderlab_tok_s"],
           "torch_tok_s": head.get("torch_tok_s"), "ratio": head.get("ratio"),
           "timing": f"best of {args.rounds} alternating rounds of {args.steps} steps",
           "baseline": baseline, "torch_mode": "torch.compile" if args.torch_compile else "eager",
           "configs": rows}
    return doc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1e6,5e6,20e6", help="non-embedding parameter targets (size_for)")
    parser.add_argument("--headline", type=float, default=5e6, help="the size whose ratio is the headline")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=256)
    parser.add_argument("--vocab", type=int, default=256)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=3, help="alternating timing rounds; the best counts")
    parser.add_argument("--torch-compile", action="store_true",
                        help="torch.compile the reference (needs a C++ compiler)")
    parser.add_argument("--peak", type=float, default=0.0, help="peak FLOP/s for MFU (default: derived for CPUs)")
    parser.add_argument("--lr", type=float, default=1e-3, help="the learning rate both sides train at")
    parser.add_argument("--attention", default="auto", help="ladderlab's attention kernel (model.attention)")
    parser.add_argument("--matmul", type=int, default=2048, help="size of the square matmul that measures the peak")
    args = parse(parser, smoke=dict(sizes="5e4", headline=5e4, batch=2, seq=32, steps=1, rounds=1, matmul=256))
    emit(run(args), args.json)


if __name__ == "__main__":
    main()
