"""Tokens/s of the mixed, packed input pipeline against tokens/s of the real train step, for one run config.

The pipeline side times `train_batches` (mixture of every corpus domain, packed rows, batched; the token cache is
built before timing). The train side times the run's jitted train step (`ladders.train.Trainer`) on the same
batches after compilation. Target: ratio = pipeline_tok_s / train_tok_s >= 5, so input never starves training.
Usage: python benchmarks/data_throughput.py [--config configs/train_tiny.gin] [--set KEY=VALUE] [--json OUT]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import jax

from ladderlab.config import load_config
from ladderlab.data import pipeline
from ladderlab.ladders.config import TrainConfig
from ladderlab.ladders.train import Trainer

REPO = Path(__file__).resolve().parents[1]


def pipeline_tok_s(cfg: TrainConfig, batches: int) -> float:
    """Tokens per second drawn from a fresh `train_batches` iterator (after its first batch)."""
    it = pipeline.train_batches(cfg.data, cfg.batch_size)
    next(it)
    start = time.perf_counter()
    for _ in range(batches):
        next(it)
    return batches * cfg.batch_size * cfg.data.seq_len / (time.perf_counter() - start)


def train_tok_s(cfg: TrainConfig, steps: int) -> float:
    """Tokens per second of the compiled train step on real batches (device time included, host waits excluded)."""
    trainer = Trainer(cfg)
    it = pipeline.train_batches(cfg.data, cfg.batch_size)
    batches = [trainer.global_batch(next(it)) for _ in range(steps + 1)]
    with jax.set_mesh(trainer.mesh):
        state, metrics = trainer.step(trainer.init(), batches[0])  # compile
        jax.block_until_ready(metrics)
        start = time.perf_counter()
        for batch in batches[1:]:
            state, metrics = trainer.step(state, batch)
        jax.block_until_ready(metrics)
    return steps * cfg.batch_size * cfg.data.seq_len / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "configs" / "train_tiny.gin"))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--batches", type=int, default=300, help="pipeline batches to time")
    parser.add_argument("--steps", type=int, default=20, help="train steps to time")
    parser.add_argument("--json", metavar="OUT")
    args = parser.parse_args()
    cfg = load_config(TrainConfig, args.config, args.set)
    vocab = pipeline.vocab_size(cfg.data)
    if cfg.model.vocab_size < vocab:  # the model must have a row for every id the tokenizer emits
        cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, vocab_size=vocab))
    pipeline.domains(cfg.data)  # build the token cache outside the timings
    doc = {"config": args.config, "overrides": args.set, "corpus": cfg.data.corpus, "tokenizer": cfg.data.tokenizer,
           "batch_size": cfg.batch_size, "seq_len": cfg.data.seq_len, "model_vocab_size": cfg.model.vocab_size,
           "devices": jax.device_count(), "pipeline_tok_s": pipeline_tok_s(cfg, args.batches),
           "train_tok_s": train_tok_s(cfg, args.steps)}
    doc["ratio"] = doc["pipeline_tok_s"] / doc["train_tok_s"]
    print(json.dumps(doc, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()
