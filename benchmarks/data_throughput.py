"""Tokens/s of the mixed, packed input pipeline against tokens/s of the real train step, for one run config.

The pipeline side times `train_batches` (mixture of every corpus domain, packed rows, batched; the token cache is
built before timing). The train side times the run's jitted train step (`ladders.run.train.Trainer`) on the same
batches after compilation. Target: ratio = pipeline_tok_s / train_tok_s >= 5, so input never starves training.
--smoke: a tiny model on a generated two-domain corpus.
Usage: python benchmarks/data_throughput.py [--config configs/train_tiny.gin] [--set KEY=VALUE] [--json OUT] [--smoke]
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

from ladderlab.config import load_config
from ladderlab.data import pipeline
from ladderlab.data.corpus import write_corpus
from ladderlab.ladders.run.config import TrainConfig
from ladderlab.ladders.run.train import Trainer

from common import emit, parse  # benchmarks/common.py

REPO = Path(__file__).resolve().parents[1]
SMOKE_SET = ["batch_size=2", "data.seq_len=32", "data.eval_tokens=256", "model.d_model=32", "model.n_layers=1",
             "model.n_heads=2", "model.d_ff=64"]


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
    lr = np.float32(cfg.lr)
    with jax.set_mesh(trainer.mesh):
        state, metrics = trainer.step(trainer.init(), batches[0], lr)  # compile
        jax.block_until_ready(metrics)
        start = time.perf_counter()
        for batch in batches[1:]:
            state, metrics = trainer.step(state, batch, lr)
        jax.block_until_ready(metrics)
    return steps * cfg.batch_size * cfg.data.seq_len / (time.perf_counter() - start)


def generated_corpus(folder: Path) -> str:
    """A two-domain corpus of random words (the smoke run's data), written to `folder`."""
    rng = np.random.default_rng(0)
    docs = {name: [" ".join("".join(rng.choice(list(letters), 5)) for _ in range(200)) for _ in range(20)]
            for name, letters in (("letters", "abcdefgh"), ("digits", "0123456789"))}
    write_corpus(folder, docs, {})
    return str(folder)


def measure(args: argparse.Namespace) -> dict:
    """The JSON result: the run config's pipeline and train-step tokens/s and their ratio."""
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
    return doc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "configs" / "train_tiny.gin"))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--batches", type=int, default=300, help="pipeline batches to time")
    parser.add_argument("--steps", type=int, default=20, help="train steps to time")
    args = parse(parser, smoke=dict(batches=20, steps=2, set=SMOKE_SET))
    with tempfile.TemporaryDirectory() as tmp:  # the smoke run's corpus and token cache
        if args.smoke:
            args.set = [f"data.corpus={generated_corpus(Path(tmp) / 'corpus')}", f"data.cache_dir={tmp}", *args.set]
        emit(measure(args), args.json)


if __name__ == "__main__":
    main()
